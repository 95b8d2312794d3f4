//! librdkafka clients: their configuration (the endpoint: servers, TLS, the user's settings),
//! the producer every write goes through, reaching the cluster, topic creation, the backlog
//! query, and the classification of librdkafka's errors.
//!
//! Invariants:
//! - Every producer is idempotent with `acks=all` (librdkafka refuses other `acks` with
//!   idempotence), so a confirmed record is on every in-sync replica, written once, in order
//!   per partition.
//! - A record counts as written only when its delivery report came back without error.
//! - Blocking librdkafka calls (metadata, watermarks, committed offsets, commits) run on
//!   tokio's blocking pool, never on a runtime thread.
//! - Every client starts from one [`Endpoint`]: a `kafkas://` URL is TLS for every client and
//!   no setting downgrades it; a private CA is used or refused, never ignored.
//! - A TLS or SASL failure librdkafka reports while `connect` reaches the cluster is `Fatal`,
//!   never retried as if the broker were down.

use std::sync::Arc;
use std::time::Duration;

use ackline_broker::BrokerError;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::{Inner, KafkaOptions, KafkaUrl, NAME, wire};

/// A `BrokerError` for librdkafka error `e` while doing `what`.
pub(crate) fn classify(what: &str, e: &KafkaError) -> BrokerError {
    let reason = format!("{what}: {e}");
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::QueueFull) => BrokerError::Full {
            backend: NAME,
            reason,
            retry_after: Some(Duration::from_millis(100)),
        },
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::InvalidTopic) => {
            BrokerError::Invalid {
                backend: NAME,
                reason,
            }
        }
        Some(
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::InvalidReplicationFactor
            | C::PolicyViolation,
        ) => BrokerError::Fatal {
            backend: NAME,
            reason,
        },
        _ => BrokerError::Unavailable {
            backend: NAME,
            reason,
        },
    }
}

pub(crate) fn unavailable(reason: impl Into<String>) -> BrokerError {
    BrokerError::Unavailable {
        backend: NAME,
        reason: reason.into(),
    }
}

/// Kafka's rule for topic names (1..=249 of `[a-zA-Z0-9._-]`), with room for `.retry`.
pub(crate) fn check_topic_name(topic: &str) -> Result<(), BrokerError> {
    let ok = !topic.is_empty()
        && topic.len() + ".retry".len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::Invalid {
            backend: NAME,
            reason: format!(
                "topic {topic:?}: expected 1 to 243 of the characters a-z A-Z 0-9 . _ -"
            ),
        })
    }
}

/// librdkafka settings of ackline's own that the user's settings may change.
const DEFAULTS: [(&str, &str); 2] = [
    ("client.id", "ackline"),
    // librdkafka waits up to 10 s between reconnects by default (Kafka's Java client: 1 s).
    // Its producer times messages out only between those waits, so a publish to a broker
    // that is down took up to 10 s past `publish_timeout`, and a restarted broker was
    // reconnected to up to 10 s late (tests/kafka/restart.rs).
    ("reconnect.backoff.max.ms", "1000"),
];

/// Where Kafka is and how to reach it: the bootstrap servers and the settings every client
/// starts from (the user's, then the transport's security).
///
/// TLS is on when the URL is `kafkas://` or the user's `security.protocol` is `ssl` or
/// `sasl_ssl`; a `kafkas://` URL with a plaintext `security.protocol` is refused, never
/// downgraded, and so is a private CA for a connection without TLS (it would be ignored).
/// Its `Debug` shows the settings' names, never their values (`sasl.password` is one).
#[derive(Clone)]
pub(crate) struct Endpoint {
    bootstrap: String,
    settings: Vec<(String, String)>,
    tls: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("bootstrap", &self.bootstrap)
            .field("tls", &self.tls)
            .field(
                "settings",
                &self.settings.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Endpoint {
    pub(crate) fn new(url: &KafkaUrl, opts: &KafkaOptions) -> Result<Self, BrokerError> {
        let invalid = |reason: String| BrokerError::Invalid {
            backend: NAME,
            reason,
        };
        let protocol = opts
            .client_config
            .iter()
            .rev()
            .find(|(k, _)| k == "security.protocol")
            .map(|(_, v)| v.trim().to_ascii_lowercase());
        let tls = match protocol.as_deref() {
            None => url.tls(),
            Some("ssl" | "sasl_ssl") => true,
            Some(p @ ("plaintext" | "sasl_plaintext")) if url.tls() => {
                return Err(invalid(format!(
                    "security.protocol={p} would send a kafkas:// connection in plaintext; \
                     use ssl or sasl_ssl (or a kafka:// URL)"
                )));
            }
            Some("plaintext" | "sasl_plaintext") => false,
            Some(p) => return Err(invalid(format!("unknown security.protocol {p:?}"))),
        };
        let mut settings = opts.client_config.clone();
        if url.tls() && protocol.is_none() {
            settings.push(("security.protocol".into(), "ssl".into()));
        }
        match (&opts.tls_ca_pem, tls) {
            (Some(ca), true) => settings.push(("ssl.ca.pem".into(), ca.clone())),
            (Some(_), false) => {
                return Err(invalid(
                    "a private CA is given for a connection without TLS; use a kafkas:// URL"
                        .into(),
                ));
            }
            (None, _) => {}
        }
        Ok(Endpoint {
            bootstrap: url.bootstrap_servers(),
            settings,
            tls,
        })
    }

    /// Whether the connection is TLS.
    pub(crate) fn tls(&self) -> bool {
        self.tls
    }

    /// The user's settings and the transport's, then those every client needs (which the
    /// contract depends on, so they win: the settings each client sets after this one win as
    /// well).
    pub(crate) fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.settings {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.bootstrap)
            .set("socket.keepalive.enable", "true");
        for (k, v) in DEFAULTS {
            if !self.settings.iter().any(|(set, _)| set == k) {
                c.set(k, v);
            }
        }
        c
    }
}

fn ms(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

/// A consumer's `max.poll.interval.ms`: the longest its pump may be away from librdkafka's
/// poll, which is a revoke (up to `revoke_grace` for the held deliveries, then their commit,
/// up to `request_timeout`), plus 10 s; never less than the session timeout (librdkafka
/// refuses that). 30 s with the defaults, where librdkafka's own default is 300 s.
///
/// librdkafka also sends it as the JoinGroup's rebalance timeout, and waits that long plus
/// 3 s for the JoinGroup's answer, because a Kafka coordinator may hold a JoinGroup that
/// long while the group's other members rejoin. A JoinGroup that is never answered (a
/// coordinator stuck on that connection, a connection that silently lost its peer) held a
/// consumer without an assignment for up to those 303 s (tests/kafka/coordinator.rs); with
/// 30 s the request times out after 33 s, librdkafka drops the connection and joins again.
/// The pump polls every `poll_interval` otherwise, so the shorter interval never costs a live
/// consumer its membership.
pub(crate) fn max_poll_interval(opts: &KafkaOptions) -> Duration {
    (opts.revoke_grace + opts.request_timeout + Duration::from_secs(10)).max(opts.session_timeout)
}

/// One record to write.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) topic: String,
    pub(crate) key: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) meta: wire::Meta,
    pub(crate) payload: Vec<u8>,
}

impl Record {
    fn headers(&self) -> OwnedHeaders {
        let mut h = OwnedHeaders::new_with_capacity(self.headers.len() + 8);
        for (k, v) in &self.headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_str()),
            });
        }
        for (k, v) in self.meta.encode() {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_str()),
            });
        }
        h
    }
}

/// The idempotent, `acks=all` producer.
#[derive(Clone)]
pub(crate) struct Producer {
    p: FutureProducer<ClientErrors>,
    timeout: Duration,
    /// What librdkafka reported to it (and to [`reach`]'s client).
    pub(crate) errors: ClientErrors,
}

impl Producer {
    pub(crate) fn new(endpoint: &Endpoint, opts: &KafkaOptions) -> Result<Self, BrokerError> {
        let mut c = endpoint.config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", ms(opts.publish_timeout))
            .set("linger.ms", "1");
        let errors = ClientErrors::default();
        let p: FutureProducer<ClientErrors> = c
            .create_with_context(errors.clone())
            .map_err(|e| classify("creating the producer", &e))?;
        Ok(Producer {
            p,
            timeout: opts.publish_timeout,
            errors,
        })
    }

    /// Writes `records`; one result per record, in order, each `Ok` only once the broker
    /// confirmed that record.
    pub(crate) async fn send_each(&self, records: Vec<Record>) -> Vec<Result<(), BrokerError>> {
        let mut pending = Vec::with_capacity(records.len());
        for r in &records {
            let fr = FutureRecord::to(&r.topic)
                .key(r.key.as_bytes())
                .payload(&r.payload)
                .headers(r.headers());
            match self.p.send_result(fr) {
                Ok(fut) => pending.push(Ok(fut)),
                Err((e, fr)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    // librdkafka's buffer is full: wait for room (send retries until the timeout).
                    let r = self
                        .p
                        .send(fr, self.timeout)
                        .await
                        .map(|_| ())
                        .map_err(|(e, _)| classify("producing", &e));
                    pending.push(Err(r));
                }
                Err((e, _)) => pending.push(Err(Err(classify("producing", &e)))),
            }
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(match p {
                Ok(fut) => match fut.await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err((e, _))) => Err(classify("producing", &e)),
                    Err(_) => Err(unavailable(
                        "the producer was closed before the delivery report",
                    )),
                },
                Err(r) => r,
            });
        }
        out
    }

    /// Writes `records`: `Ok` once all are confirmed, else the first error (the others may
    /// or may not have been written).
    pub(crate) async fn send_all(&self, records: Vec<Record>) -> Result<(), BrokerError> {
        self.send_each(records).await.into_iter().collect()
    }
}

/// A consumer that is no group member: for metadata, watermarks and the group's committed
/// offsets (`group`), or for reading a topic by assignment.
pub(crate) fn plain_consumer(inner: &Inner, group: &str) -> Result<BaseConsumer, BrokerError> {
    let mut c = inner.endpoint.config();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    c.create().map_err(|e| classify("creating a consumer", &e))
}

/// Creates the topic, its retry and its dead-letter topic when missing, then checks they are
/// there.
pub(crate) async fn ensure_topics(inner: &Arc<Inner>) -> Result<(), BrokerError> {
    let names = [&inner.topic, &inner.retry, &inner.dlq];
    let i = inner.clone();
    blocking(move || reach(&i)).await?;
    if inner.opts.create_topics {
        let admin: AdminClient<DefaultClientContext> = inner
            .endpoint
            .config()
            .create()
            .map_err(|e| classify("creating the admin client", &e))?;
        let r = inner.opts.replication.unwrap_or(-1);
        let repl = || TopicReplication::Fixed(r);
        let topics = [
            NewTopic::new(&inner.topic, inner.opts.partitions, repl()),
            NewTopic::new(&inner.retry, inner.opts.partitions, repl()),
            // Dead letters are kept until purged (the topic is their store).
            NewTopic::new(&inner.dlq, 1, repl()).set("retention.ms", "-1"),
        ];
        let ao = AdminOptions::new().operation_timeout(Some(inner.opts.request_timeout));
        let results = admin
            .create_topics(topics.iter(), &ao)
            .await
            .map_err(|e| classify("creating topics", &e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(classify(
                        &format!("creating topic {t:?}"),
                        &KafkaError::AdminOp(code),
                    ));
                }
            }
        }
    }
    let inner2 = inner.clone();
    let missing = blocking(move || {
        let c = plain_consumer(&inner2, &inner2.opts.group)?;
        let mut missing = Vec::new();
        for t in [&inner2.topic, &inner2.retry, &inner2.dlq] {
            if partitions(&c, t, inner2.opts.request_timeout)?.is_empty() {
                missing.push(t.clone());
            }
        }
        Ok(missing)
    })
    .await?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unavailable(format!(
            "topics {missing:?} do not exist (of {names:?}); create them or allow create_topics"
        )))
    }
}

/// The errors librdkafka reported to the clients that share it (the broker handle's producer
/// and the client of [`reach`]), kept so that a request that then fails can say why: the last
/// security error (TLS, SASL) and the last error of any kind. Shared because librdkafka
/// turns a failed connection into an error event only now and then (an identical error on
/// the same broker handle within 30 s is logged at debug level only): under load (load
/// average 7) the producer alone reported the failed TLS handshake in 2 of 8 runs of the
/// untrusted-certificate test, and `connect` said only "unavailable" (10 of 10 after).
#[derive(Clone, Default)]
pub(crate) struct ClientErrors(Arc<Reported>);

#[derive(Default)]
struct Reported {
    security: parking_lot::Mutex<Option<String>>,
    last: parking_lot::Mutex<Option<String>>,
}

impl ClientErrors {
    fn security(&self) -> Option<String> {
        self.0.security.lock().clone()
    }

    fn last(&self) -> Option<String> {
        self.0.last.lock().clone()
    }
}

impl rdkafka::ClientContext for ClientErrors {
    fn error(&self, error: KafkaError, reason: &str) {
        use RDKafkaErrorCode as C;
        let text = format!("{error}: {reason}");
        if matches!(
            error.rdkafka_error_code(),
            Some(C::SSL | C::Authentication | C::SaslAuthenticationFailed)
        ) {
            *self.0.security.lock() = Some(text.clone());
        }
        *self.0.last.lock() = Some(text);
        tracing::warn!(error = %error, reason, "kafka: client error");
    }
}

impl rdkafka::consumer::ConsumerContext for ClientErrors {}

/// How often [`reach`] looks for a security error while it waits for metadata.
const REACH_STEP: Duration = Duration::from_millis(250);

/// Waits (at most `request_timeout`) until the cluster answers a metadata request for the
/// topic. A TLS or SASL failure is `Fatal` with librdkafka's reason (a wrong certificate
/// or password does not heal by waiting, and there is no plaintext fallback); no answer is
/// `Unavailable`, with the clients' last error when they reported one.
fn reach(inner: &Inner) -> Result<(), BrokerError> {
    let c: BaseConsumer<ClientErrors> = inner
        .endpoint
        .config()
        .create_with_context(inner.producer.errors.clone())
        .map_err(|e| classify("creating a client", &e))?;
    let deadline = std::time::Instant::now() + inner.opts.request_timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let err = match c.fetch_metadata(Some(&inner.topic), left.min(REACH_STEP)) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // Serves the client's events: its errors reach the context.
        while c.poll(Duration::ZERO).is_some() {}
        let tls = if inner.endpoint.tls() {
            "TLS"
        } else {
            "plaintext"
        };
        if let Some(why) = c.context().security() {
            return Err(BrokerError::Fatal {
                backend: NAME,
                reason: format!(
                    "reaching Kafka ({tls}): {why}; a certificate or credential problem: check \
                     the CA (broker.tls_ca_file), security.protocol and the SASL settings"
                ),
            });
        }
        if left.is_zero() {
            let what = match c.context().last() {
                Some(last) => format!("reaching Kafka ({tls}; the clients' last error: {last})"),
                None => format!("reaching Kafka ({tls})"),
            };
            return Err(classify(&what, &err));
        }
    }
}

/// The partitions of `topic` (empty when it does not exist).
pub(crate) fn partitions<C: rdkafka::consumer::ConsumerContext>(
    c: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, BrokerError> {
    let md = c
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| classify(&format!("metadata of {topic:?}"), &e))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// Runs blocking librdkafka work on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Fatal {
            backend: NAME,
            reason: format!("a blocking Kafka call panicked: {e}"),
        })?
}

/// Records of the topic and the retry topic past the group's committed offsets, and the
/// dead-letter topic's live entries.
pub(crate) async fn backlog(inner: &Arc<Inner>) -> Result<(u64, u64), BrokerError> {
    let i = inner.clone();
    let pending = blocking(move || {
        let c = plain_consumer(&i, &i.opts.group)?;
        let t = i.opts.request_timeout;
        let mut tpl = TopicPartitionList::new();
        let mut marks = Vec::new();
        for topic in [&i.topic, &i.retry] {
            for p in partitions(&c, topic, t)? {
                let (low, high) = c
                    .fetch_watermarks(topic, p, t)
                    .map_err(|e| classify("watermarks", &e))?;
                tpl.add_partition(topic, p);
                marks.push((topic.clone(), p, low, high));
            }
        }
        let committed = c
            .committed_offsets(tpl, t)
            .map_err(|e| classify("committed offsets", &e))?;
        let mut pending = 0u64;
        for (topic, p, low, high) in marks {
            let start = match committed.find_partition(&topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o.max(low),
                _ => low,
            };
            pending += u64::try_from(high - start).unwrap_or(0);
        }
        Ok(pending)
    })
    .await?;
    let dead = crate::dlq::scan(inner).await?.len() as u64;
    Ok((pending, dead))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_poll_interval_covers_a_revoke_and_the_session() {
        let d = KafkaOptions::default();
        assert_eq!(max_poll_interval(&d), Duration::from_secs(30));
        let slow = KafkaOptions {
            revoke_grace: Duration::from_secs(60),
            request_timeout: Duration::from_secs(20),
            ..d.clone()
        };
        assert_eq!(max_poll_interval(&slow), Duration::from_secs(90));
        let long_session = KafkaOptions {
            session_timeout: Duration::from_secs(45),
            ..d
        };
        assert_eq!(max_poll_interval(&long_session), Duration::from_secs(45));
    }

    #[test]
    fn topic_names_follow_kafkas_rule() {
        for ok in ["logs", "a.b_c-D9", &"x".repeat(243)] {
            assert!(check_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", &"x".repeat(244)] {
            assert!(
                matches!(check_topic_name(bad), Err(BrokerError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    fn endpoint(
        url: &str,
        settings: &[(&str, &str)],
        ca: Option<&str>,
    ) -> Result<Endpoint, BrokerError> {
        let opts = KafkaOptions {
            client_config: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            tls_ca_pem: ca.map(str::to_owned),
            ..KafkaOptions::default()
        };
        Endpoint::new(&KafkaUrl::parse(url).expect("valid URL"), &opts)
    }

    fn setting(e: &Endpoint, key: &str) -> Option<String> {
        e.config().get(key).map(str::to_owned)
    }

    #[test]
    fn tls_comes_from_the_url_or_the_security_protocol_and_is_never_downgraded() {
        // kafka:// stays plaintext; kafkas:// is TLS with the CA given.
        let e = endpoint("kafka://k:9092", &[], None).expect("plain");
        assert!(!e.tls());
        assert_eq!(setting(&e, "security.protocol"), None);
        let e = endpoint("kafkas://k:9093", &[], Some("PEM")).expect("tls");
        assert!(e.tls());
        assert_eq!(setting(&e, "security.protocol").as_deref(), Some("ssl"));
        assert_eq!(setting(&e, "ssl.ca.pem").as_deref(), Some("PEM"));
        assert_eq!(setting(&e, "bootstrap.servers").as_deref(), Some("k:9093"));
        // SASL over TLS from the settings, with either scheme.
        for url in ["kafka://k:9093", "kafkas://k:9093"] {
            let e = endpoint(url, &[("security.protocol", "SASL_SSL")], Some("PEM")).expect(url);
            assert!(e.tls(), "{url}");
            assert_eq!(
                setting(&e, "security.protocol").as_deref(),
                Some("SASL_SSL")
            );
            assert_eq!(setting(&e, "ssl.ca.pem").as_deref(), Some("PEM"));
        }
        // kafkas:// with a plaintext protocol, a CA without TLS, an unknown protocol.
        for (url, settings, ca, want) in [
            (
                "kafkas://k:1",
                &[("security.protocol", "plaintext")][..],
                None,
                "plaintext",
            ),
            (
                "kafkas://k:1",
                &[("security.protocol", "sasl_plaintext")][..],
                None,
                "plaintext",
            ),
            ("kafka://k:1", &[][..], Some("PEM"), "without TLS"),
            (
                "kafka://k:1",
                &[("security.protocol", "quic")][..],
                None,
                "unknown",
            ),
        ] {
            match endpoint(url, settings, ca) {
                Err(BrokerError::Invalid { reason, .. }) => {
                    assert!(reason.contains(want), "{url} {settings:?}: {reason}");
                }
                other => panic!("{url} {settings:?} {ca:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_users_settings_override_ackline_defaults_and_debug_hides_their_values() {
        let e = endpoint("kafka://k:1", &[], None).expect("plain");
        assert_eq!(setting(&e, "client.id").as_deref(), Some("ackline"));
        assert_eq!(
            setting(&e, "reconnect.backoff.max.ms").as_deref(),
            Some("1000")
        );
        let e = endpoint(
            "kafka://k:1",
            &[
                ("reconnect.backoff.max.ms", "5000"),
                ("sasl.password", "hunter2"),
            ],
            None,
        )
        .expect("plain");
        assert_eq!(
            setting(&e, "reconnect.backoff.max.ms").as_deref(),
            Some("5000")
        );
        let shown = format!("{e:?}");
        assert!(shown.contains("sasl.password"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let opts = KafkaOptions {
            client_config: vec![("sasl.password".into(), "hunter2".into())],
            ..KafkaOptions::default()
        };
        let shown = format!("{opts:?}");
        assert!(shown.contains("sasl.password"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn errors_are_classified_by_code() {
        let e = |c| classify("x", &KafkaError::MessageProduction(c));
        assert!(matches!(
            e(RDKafkaErrorCode::QueueFull),
            BrokerError::Full { .. }
        ));
        assert!(matches!(
            e(RDKafkaErrorCode::MessageSizeTooLarge),
            BrokerError::Invalid { .. }
        ));
        assert!(matches!(
            e(RDKafkaErrorCode::TopicAuthorizationFailed),
            BrokerError::Fatal { .. }
        ));
        assert!(matches!(
            e(RDKafkaErrorCode::BrokerTransportFailure),
            BrokerError::Unavailable { .. }
        ));
    }
}
