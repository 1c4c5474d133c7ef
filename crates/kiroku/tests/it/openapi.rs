//! The OpenAPI document describes exactly the routes the server serves.

use std::collections::BTreeSet;

use kiroku_server::routes::ROUTES;
use serde_json::Value;

use crate::support::TestApp;

fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(kiroku_server::OPENAPI).expect("openapi.json is JSON");
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().expect("paths") {
        for method in ops.as_object().unwrap().keys() {
            if method != "parameters" {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented(), routed);
}

#[tokio::test]
async fn every_route_in_the_table_is_served_and_guarded() {
    let t = TestApp::sqlite().await;
    for r in ROUTES {
        let path = r
            .path
            .replace("{key}", "DB-2026-001")
            .replace("{id}", "00000000-0000-7000-8000-000000000000");
        let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
        let mut req = t.http.request(method, t.url(&path));
        if r.access == kiroku_server::routes::Access::RoutingKey {
            req = req.json(&serde_json::json!({}));
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        if r.access == kiroku_server::routes::Access::RoutingKey {
            // Without a known routing key intake refuses, naming the key.
            let body: Value = res.json().await.unwrap();
            assert!(
                matches!(status, 400 | 404) && body.to_string().contains("routing_key"),
                "{} {} answered {status} {body}",
                r.method,
                r.path
            );
            continue;
        }
        match r.access {
            kiroku_server::routes::Access::Public => {
                assert_ne!(status, 401, "{} {}", r.method, r.path)
            }
            kiroku_server::routes::Access::RoutingKey => unreachable!(),
            kiroku_server::routes::Access::Authenticated => assert_eq!(
                status, 401,
                "{} {} answered without credentials",
                r.method, r.path
            ),
        }
        assert_ne!(
            status, 404,
            "{} {} is in the table but not served",
            r.method, r.path
        );
    }
}

#[tokio::test]
async fn served_document_matches_the_snapshot() {
    let t = TestApp::sqlite().await;
    let doc: Value = t
        .http
        .get(t.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    insta::assert_json_snapshot!("openapi", doc);
}
