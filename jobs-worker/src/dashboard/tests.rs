//! The dashboard's API on the in-memory broker, with the real engine putting failures in the
//! error queue: groups, one failure in full, replay of a group, delete, purge, pause, and every
//! refusal of an action.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use jobs_core::testing::TestApp;
use jobs_core::transport::Transport;
use jobs_core::{JobError, job};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::{Dashboard, routes};
use crate::config::DashboardToken;
use crate::fleet::Fleet;

/// A message that fails for its cause until the cause is healed.
#[derive(Clone, PartialEq, prost::Message)]
struct Broken {
    #[prost(string, tag = "1")]
    cause: String,
}

/// The causes healed: their messages succeed.
static HEALED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

#[job(exchange = "dashboard-test", routing_key = "broken")]
async fn broken(message: Broken) -> Result<(), JobError> {
    let healed = HEALED
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|healed| healed.contains(&message.cause));
    if healed {
        return Ok(());
    }
    Err(JobError::fatal(format!(
        "{} is down\nsecond line",
        message.cause
    )))
}

const ERR: &str = "dashboard-test.broken.err";
const TOKEN: &str = "a-token-of-24-characters";

fn dashboard(app: &TestApp, token: Option<&str>) -> axum::Router {
    let transport: Arc<dyn Transport> = Arc::new(app.transport().clone());
    let cell = Arc::new(OnceLock::new());
    cell.set(transport).unwrap();
    routes(Arc::new(Dashboard::new(
        app.engine().jobs().to_vec(),
        cell,
        token.map(|token| DashboardToken::new(token).unwrap()),
        Arc::new(Fleet::default()),
        "test-worker".to_owned(),
    )))
}

async fn get(router: &axum::Router, path: &str) -> (StatusCode, Value) {
    let request = Request::get(path).body(Body::empty()).unwrap();
    send(router, request).await
}

async fn post(
    router: &axum::Router,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = Request::post(path)
        .header("host", "127.0.0.1:9090")
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(router, request.body(Body::from(body.to_string())).unwrap()).await
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

/// The groups, as `(cause, count)` sorted by cause.
async fn groups(router: &axum::Router) -> Vec<(String, u64)> {
    let (status, body) = get(router, "/api/errors").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut groups: Vec<(String, u64)> = body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| {
            assert_eq!(group["job"], "broken");
            assert_eq!(group["kind"], "fatal");
            assert_eq!(group["queue"], ERR);
            (
                group["error"].as_str().unwrap().to_owned(),
                group["count"].as_u64().unwrap(),
            )
        })
        .collect();
    groups.sort();
    groups
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

#[tokio::test(start_paused = true)]
async fn groups_detail_replay_delete_purge_and_pause() {
    let app = TestApp::builder().job(&broken::JOB).build().unwrap();
    for (cause, n) in [("disk", 10), ("network", 7), ("quota", 3)] {
        for _ in 0..n {
            broken::enqueue(
                &app,
                Broken {
                    cause: cause.into(),
                },
            )
            .await
            .unwrap();
        }
    }
    app.run_until_idle().await;
    assert_eq!(app.failed(&broken::JOB), 20);
    let router = dashboard(&app, Some(TOKEN));

    // Grouped by job, kind and the error's first line.
    assert_eq!(
        groups(&router).await,
        [
            ("disk is down".to_owned(), 10),
            ("network is down".to_owned(), 7),
            ("quota is down".to_owned(), 3)
        ]
    );
    assert_eq!(app.transport().returns(ERR).iter().sum::<u32>(), 0);

    // A group's messages, and one in full with its body decoded.
    let (status, body) = get(
        &router,
        &format!("/api/errors/messages?queue={ERR}&kind=fatal&error=quota%20is%20down"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    let id = messages[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(messages[0]["attempt"], 1);
    let (status, detail) = get(&router, &format!("/api/errors/message?queue={ERR}&id={id}")).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["error"], "quota is down\nsecond line");
    assert!(
        detail["body"]
            .as_str()
            .unwrap()
            .contains("cause: \"quota\""),
        "{detail}"
    );
    assert!(
        detail["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|pair| pair[0] == "x-jobs-error-kind"),
        "{detail}"
    );
    let (status, _) = get(&router, &format!("/api/errors/message?queue={ERR}&id=nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Refusals leave everything as it was.
    let group = json!({"queue": ERR, "kind": "fatal", "error": "disk is down"});
    let (status, body) = post(&router, "/api/errors/replay", &group, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = post(
        &router,
        "/api/errors/replay",
        &group,
        &[("authorization", "Bearer wrong-token-of-24-chars")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post(
        &router,
        "/api/errors/replay",
        &group,
        &[
            ("authorization", &bearer()),
            ("origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = post(
        &router,
        "/api/errors/replay",
        &json!({"queue": "someone-else.err"}),
        &[("authorization", &bearer())],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "only this worker's error queues"
    );
    assert_eq!(app.transport().queue_len(ERR), Some(20));

    // Replaying one group runs that group again, and only it.
    HEALED
        .lock()
        .unwrap()
        .get_or_insert_default()
        .insert("disk".to_owned());
    let (status, body) = post(
        &router,
        "/api/errors/replay",
        &group,
        &[
            ("authorization", &bearer()),
            ("origin", "http://127.0.0.1:9090"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"replayed": 10, "not_replayed": 0}));
    app.run_until_idle().await;
    assert_eq!(app.succeeded(&broken::JOB), 10);
    assert_eq!(
        groups(&router).await,
        [
            ("network is down".to_owned(), 7),
            ("quota is down".to_owned(), 3)
        ]
    );

    // Deleting one message removes exactly that one.
    let (status, body) = post(
        &router,
        "/api/errors/delete",
        &json!({"queue": ERR, "id": id}),
        &[("authorization", &bearer())],
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"removed": 1})));
    assert_eq!(
        groups(&router).await,
        [
            ("network is down".to_owned(), 7),
            ("quota is down".to_owned(), 2)
        ]
    );
    let ids: Vec<String> = app
        .transport()
        .messages(ERR)
        .iter()
        .map(|e| e.properties.message_id.clone().unwrap())
        .collect();
    assert!(!ids.contains(&id));
    assert_eq!(ids.len(), 9);

    // Pause through the dashboard is the broker's state, which the overview shows.
    let (status, _) = post(
        &router,
        "/api/jobs/pause",
        &json!({"job": "broken"}),
        &[("authorization", &bearer())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        jobs_core::control::is_paused(app.transport(), "broken")
            .await
            .unwrap()
    );
    let (_, overview) = get(&router, "/api/overview").await;
    let job = &overview["jobs"][0];
    assert_eq!(job["paused"], true, "{overview}");
    assert_eq!(job["kind"], "direct");
    let error_queue = job["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|queue| queue["role"] == "error")
        .unwrap();
    assert_eq!(error_queue["ready"], 9, "{overview}");
    assert_eq!(overview["worker"]["actions"], true);
    assert_eq!(overview["delayed"], json!([]));
    broken::with(Broken {
        cause: "later".into(),
    })
    .delay(std::time::Duration::from_secs(3600))
    .enqueue(&app)
    .await
    .unwrap();
    // One reading serves every viewer for a moment; the next one sees the delayed job.
    let (_, cached) = get(&router, "/api/overview").await;
    assert_eq!(cached["delayed"], json!([]), "{cached}");
    tokio::time::advance(super::shared_read::FRESH_FOR).await;
    let (_, overview) = get(&router, "/api/overview").await;
    let delayed = overview["delayed"].as_array().unwrap();
    assert_eq!(delayed.len(), 1, "{overview}");
    assert_eq!(delayed[0]["waiting"], 1);

    // Purge empties the queue.
    let (status, body) = post(
        &router,
        "/api/errors/purge",
        &json!({"queue": ERR}),
        &[("authorization", &bearer())],
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"purged": 9})));
    assert!(groups(&router).await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn without_a_token_actions_are_off_and_bad_bodies_are_refused_typed() {
    let app = TestApp::builder().job(&broken::JOB).build().unwrap();
    broken::enqueue(&app, Broken { cause: "x".into() })
        .await
        .unwrap();
    app.run_until_idle().await;
    let read_only = dashboard(&app, None);
    let (status, body) = post(
        &read_only,
        "/api/errors/purge",
        &json!({"queue": ERR}),
        &[("authorization", &bearer())],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("actions are off"));
    assert_eq!(app.transport().queue_len(ERR), Some(1));
    let (_, overview) = get(&read_only, "/api/overview").await;
    assert_eq!(overview["worker"]["actions"], false);

    let router = dashboard(&app, Some(TOKEN));
    let (status, body) = post(
        &router,
        "/api/errors/replay",
        &json!({"queue": ERR, "all": true}),
        &[("authorization", &bearer())],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let request = Request::post("/api/errors/purge")
        .header("authorization", bearer())
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    let (status, body) = send(&router, request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let request = Request::post("/api/errors/purge")
        .header("authorization", bearer())
        .header("content-type", "application/json")
        .body(Body::from(vec![b'x'; 64 * 1024]))
        .unwrap();
    let (status, _) = send(&router, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.transport().queue_len(ERR), Some(1));
}

#[tokio::test(start_paused = true)]
async fn the_page_is_served_with_headers_that_keep_it_to_itself() {
    let app = TestApp::builder().job(&broken::JOB).build().unwrap();
    let router = dashboard(&app, Some(TOKEN));
    let response = router
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(!page.contains(TOKEN), "no secret reaches the page");
    for elsewhere in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!page.contains(elsewhere), "nothing loaded from elsewhere");
    }
}

#[tokio::test(start_paused = true)]
async fn before_the_broker_connects_reads_say_so_and_actions_are_refused_typed() {
    let app = TestApp::builder().job(&broken::JOB).build().unwrap();
    let router = routes(Arc::new(Dashboard::new(
        app.engine().jobs().to_vec(),
        Arc::new(OnceLock::new()),
        Some(DashboardToken::new(TOKEN).unwrap()),
        Arc::new(Fleet::default()),
        "test-worker".to_owned(),
    )));
    // The overview still answers, with nothing read from the broker.
    let (status, overview) = get(&router, "/api/overview").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(overview["jobs"][0]["paused"], Value::Null, "{overview}");
    assert!(
        overview["jobs"][0]["queues"]
            .as_array()
            .unwrap()
            .iter()
            .all(|queue| queue["ready"].is_null()),
        "{overview}"
    );
    let (status, body) = get(&router, "/api/errors").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (status, body) = post(
        &router,
        "/api/errors/purge",
        &json!({"queue": ERR}),
        &[("authorization", &bearer())],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not connected"));
}

#[tokio::test(start_paused = true)]
async fn the_overview_shows_the_outbox_relay_only_where_the_worker_runs_one() {
    let app = TestApp::builder().job(&broken::JOB).build().unwrap();
    let (status, overview) = get(&dashboard(&app, None), "/api/overview").await;
    assert_eq!(status, StatusCode::OK);
    assert!(overview.get("outbox").is_none(), "{overview}");

    #[cfg(feature = "outbox")]
    {
        // A relay that has not reached its database yet: nothing read, nothing counted.
        let transport: Arc<dyn Transport> = Arc::new(app.transport().clone());
        let cell = Arc::new(OnceLock::new());
        cell.set(transport).unwrap();
        let router = routes(Arc::new(
            Dashboard::new(
                app.engine().jobs().to_vec(),
                cell,
                None,
                Arc::new(Fleet::default()),
                "test-worker".to_owned(),
            )
            .with_outbox(Some(Arc::default())),
        ));
        let (status, overview) = get(&router, "/api/overview").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            overview["outbox"],
            json!({
                "connected": false,
                "up": false,
                "oldest_seconds": null,
                "published": 0,
                "pushed_back": 0,
            }),
            "{overview}"
        );
    }
}
