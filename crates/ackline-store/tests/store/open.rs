//! `open`: URL dispatch and URL errors.

use ackline_store::{AnyStore, Store, StoreError, StoreOptions, WriteReport};

use crate::common::batch;

#[tokio::test]
async fn open_dispatches_by_url() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions::default();
    let db = dir.path().join("a.db");
    let cases = [
        (format!("sqlite:{}", db.display()), "sqlite"),
        (dir.path().join("b.sqlite").display().to_string(), "sqlite"),
        (
            format!("ndjson:{}", dir.path().join("c.ndjson").display()),
            "ndjson",
        ),
        ("stdout".to_owned(), "stdout"),
    ];
    for (url, kind) in cases {
        let s = ackline_store::open(&url, &opts).await.unwrap();
        assert_eq!(s.kind(), kind, "{url}");
        s.probe().await.unwrap();
        if kind != "stdout" {
            let b = batch("o", 0..4);
            assert_eq!(
                s.write_batch(&b).await.unwrap(),
                WriteReport {
                    inserted: 4,
                    duplicates: 0
                }
            );
            assert_eq!(
                s.write_batch(&b).await.unwrap(),
                WriteReport {
                    inserted: 0,
                    duplicates: 4
                }
            );
        }
    }
    let s = ackline_store::open(&format!("sqlite:{}", db.display()), &opts)
        .await
        .unwrap();
    assert!(matches!(s, AnyStore::Sqlite(_)));
    assert_eq!(s.as_sqlite().unwrap().count().await.unwrap(), 4);
}

#[tokio::test]
async fn open_bad_url_is_a_one_line_fatal_error() {
    let opts = StoreOptions::default();
    for url in ["mysql://localhost/x", "records", "sqlite:", "ftp://h/x.db"] {
        let err = ackline_store::open(url, &opts).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Fatal { store: "url", .. }),
            "{url}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("expected sqlite:PATH"), "{text}");
        assert!(text.contains("postgres://"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
