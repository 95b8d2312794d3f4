//! The OpenAPI 3 document, hand-written in `openapi.json` beside this file and served as is.
//!
//! Hand-written rather than derived (utoipa): no proc-macro build cost, and the document is
//! reviewed as the contract it is. Tests keep it honest: the set of (method, path) in the
//! document equals the router's table, both ways (below); and every request and response body
//! of the lease and admin API fits its schema as [`ackline_wire`]'s types write it, the types
//! both this server and its client `ackline-http` use (`bodies`).

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod bodies;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    #[test]
    fn every_route_is_documented_and_every_documented_route_served() {
        let doc: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.insert((method.clone(), path.clone()));
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let served: BTreeSet<(String, String)> = rt.block_on(async {
            let cfg = crate::ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..crate::ServerConfig::new(dir.path())
            };
            let server = crate::Server::bind(cfg).await.unwrap();
            let (_, routes) = crate::routes::build(server.state.clone());
            routes
                .iter()
                .map(|(m, p)| (m.to_string(), p.to_string()))
                .collect()
        });
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }
}
