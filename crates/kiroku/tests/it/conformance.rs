//! One storage story, told to every backend: what the store promises the
//! write path, checked on SQLite and PostgreSQL alike.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use kiroku_app::{
    App, Caller, DeclareIncident, ListIncidents, NewIntegration, NewUser, UpdateIncident,
};
use kiroku_domain::alert::{Integration, generic};
use kiroku_domain::{
    AuditEvent, Operation, Role, Source, Target, TimelineEntry, TimelineKind, Transition,
};
use kiroku_store::{AlertGroup, IncidentKey, IncidentQuery, Store, StoreError};

use crate::support::{self, PASSWORD};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let s = crate::support::sqlite().await;
                    super::$name(s.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(s) = crate::support::postgres().await else { return };
                    super::$name(s.store.clone()).await;
                }
            )*
        }
    };
}

conformance!(
    numbers_are_unique_and_gap_free_under_50_concurrent_declarations,
    a_transaction_without_an_audit_event_does_not_commit,
    a_dropped_transaction_leaves_nothing_behind,
    audit_sequence_is_gap_free_under_concurrent_writers,
    stale_versions_are_refused,
    filters_and_cursor_pages,
    text_search_treats_wildcards_literally,
    user_names_are_unique,
    failures_count_within_a_window,
    batched_appends_keep_the_tree_whole,
    timelines_read_together_match_each_read_alone,
    timeline_entries_appended_together_land_on_their_own_incidents,
    intake_reads_many_keys_and_groups,
    the_intake_journal_is_applied_once_across_restarts,
    a_record_that_cannot_be_kept_holds_the_applier,
    a_kept_record_is_replayed_once,
    records_applied_together_are_not_applied_again_on_restart,
    closing_the_intake_journal_waits_for_its_applier,
    locking_reads_of_many_return_those_that_exist_in_order_of_id,
);

/// A generic integration of a new service `service`.
async fn generic_integration(app: &App, admin: &Caller, service: &str) -> Integration {
    app.create_integration(
        admin,
        NewIntegration {
            service: service.into(),
            kind: "generic".into(),
            name: None,
            rate_limit_per_second: None,
        },
    )
    .await
    .unwrap()
}

async fn app(store: Arc<dyn Store>) -> (App, Caller) {
    let app = App::new(store, support::config());
    let admin = Caller::local_operator();
    app.create_user(
        &admin,
        NewUser {
            name: "ops".into(),
            display_name: String::new(),
            email: None,
            role: Role::Responder,
            password: PASSWORD.into(),
        },
    )
    .await
    .unwrap();
    (app, admin)
}

fn declare(title: &str, severity: &str, category: &str) -> DeclareIncident {
    DeclareIncident {
        title: title.into(),
        category: category.into(),
        severity: severity.into(),
        ..Default::default()
    }
}

async fn numbers_are_unique_and_gap_free_under_50_concurrent_declarations(store: Arc<dyn Store>) {
    let (app, caller) = app(store.clone()).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (app, caller) = (app.clone(), caller.clone());
        tasks.push(tokio::spawn(async move {
            app.declare_incident(&caller, declare(&format!("incident {i}"), "P1", "database"))
                .await
                .unwrap()
                .number
        }));
    }
    let mut numbers = BTreeSet::new();
    for t in tasks {
        numbers.insert(t.await.unwrap());
    }
    let year = Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap())
        .year();
    let expected: BTreeSet<String> = (1..=50).map(|n| format!("DB-{year}-{n:03}")).collect();
    assert_eq!(numbers, expected);
    // Another category counts from one.
    let other = app
        .declare_incident(&caller, declare("leak", "P0", "information_leak"))
        .await
        .unwrap();
    assert_eq!(other.number, format!("LEAK-{year}-001"));
}

fn event(action: &str) -> AuditEvent {
    crate::support::system_event(Operation::Execute, action, Target::new("test", None))
}

async fn a_transaction_without_an_audit_event_does_not_commit(store: Arc<dyn Store>) {
    let (app, caller) = app(store.clone()).await;
    let incident = app
        .declare_incident(&caller, declare("x", "P2", "database"))
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    let mut changed = incident.clone();
    changed.title = "changed without audit".into();
    changed.version += 1;
    tx.update_incident(&changed, incident.version)
        .await
        .unwrap();
    assert!(matches!(tx.commit().await, Err(StoreError::Unaudited)));
    let stored = store
        .incident(&IncidentKey::Id(incident.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.title, "x");
}

async fn a_dropped_transaction_leaves_nothing_behind(store: Arc<dyn Store>) {
    let (app, caller) = app(store.clone()).await;
    let before = store.audit_events(&Default::default()).await.unwrap().len();
    let incident = app
        .declare_incident(&caller, declare("x", "P2", "database"))
        .await
        .unwrap();
    {
        let mut tx = store.begin().await.unwrap();
        let mut changed = incident.clone();
        changed.version += 1;
        changed.title = "rolled back".into();
        tx.update_incident(&changed, incident.version)
            .await
            .unwrap();
        tx.append_audit(&event("never_committed")).await.unwrap();
        // Dropped here: rolled back.
    }
    let stored = store
        .incident(&IncidentKey::Id(incident.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.title, "x");
    let events = store
        .audit_events(&kiroku_store::AuditQuery {
            limit: 200,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(events.iter().all(|e| e.action != "never_committed"));
    assert_eq!(events.len(), before + 1, "only the declaration's event");
    assert_eq!(
        store.outbox(10).await.unwrap().len(),
        1,
        "only the declaration's message"
    );
}

async fn audit_sequence_is_gap_free_under_concurrent_writers(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let seq = tx.append_audit(&event(&format!("e{i}"))).await.unwrap();
            tx.commit().await.unwrap();
            seq
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = store
        .audit_events(&kiroku_store::AuditQuery {
            limit: 200,
            ..Default::default()
        })
        .await
        .unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
    assert_eq!(events.len(), 40);
}

/// The escalation worker's reads: many incidents and their escalations,
/// each kind in one read, whatever order and repeats the ids come in,
/// past one statement's share of ids, and without the ids that have none.
async fn locking_reads_of_many_return_those_that_exist_in_order_of_id(store: Arc<dyn Store>) {
    let (app, caller) = app(store.clone()).await;
    let mut declared = Vec::new();
    for title in ["a", "b", "c"] {
        let i = app
            .declare_incident(&caller, declare(title, "P2", "database"))
            .await
            .unwrap();
        declared.push(i.id);
    }
    // Out of order, one twice, and split between two statements' shares
    // of 500: 499 ids that sort before every declared one, then the
    // declared, then 200 that sort after.
    let mut asked = vec![declared[2], declared[0]];
    asked.extend((1..500).map(uuid::Uuid::from_u128));
    asked.extend((0..200).map(|_| uuid::Uuid::now_v7()));
    asked.extend([declared[1], declared[0]]);
    declared.sort();
    let mut tx = store.begin().await.unwrap();
    let incidents = tx.incidents_for_update(&asked).await.unwrap();
    let ids: Vec<uuid::Uuid> = incidents.iter().map(|i| i.id).collect();
    assert_eq!(ids, declared);
    let escalations = tx.escalations_for_update(&asked).await.unwrap();
    let ids: Vec<uuid::Uuid> = escalations.iter().map(|e| e.incident_id).collect();
    assert_eq!(ids, declared);
    assert!(tx.incidents_for_update(&[]).await.unwrap().is_empty());
    let one = tx.escalation_for_update(declared[1]).await.unwrap();
    assert_eq!(one.map(|e| e.incident_id), Some(declared[1]));
}

async fn stale_versions_are_refused(store: Arc<dyn Store>) {
    let (app, caller) = app(store.clone()).await;
    let incident = app
        .declare_incident(&caller, declare("x", "P2", "database"))
        .await
        .unwrap();
    let key = IncidentKey::Id(incident.id);
    app.transition(&caller, &key, Transition::Acknowledge, None, Some(1))
        .await
        .unwrap();
    let err = app
        .update_incident(
            &caller,
            &key,
            UpdateIncident {
                title: Some("y".into()),
                ..Default::default()
            },
            Some(1),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "version_conflict");
    let mut tx = store.begin().await.unwrap();
    let mut stale = incident.clone();
    stale.version = 2;
    assert!(matches!(
        tx.update_incident(&stale, 1).await,
        Err(StoreError::VersionMismatch { current: 2 })
    ));
}

async fn filters_and_cursor_pages(store: Arc<dyn Store>) {
    let (app, caller) = app(store.clone()).await;
    for i in 0..7 {
        let sev = if i % 2 == 0 { "P0" } else { "P3" };
        let cat = if i < 4 { "database" } else { "server_failure" };
        let inc = app
            .declare_incident(&caller, declare(&format!("item {i}"), sev, cat))
            .await
            .unwrap();
        if i == 0 {
            app.transition(
                &caller,
                &IncidentKey::Id(inc.id),
                Transition::Resolve,
                None,
                None,
            )
            .await
            .unwrap();
        }
    }
    let list = |q: ListIncidents| {
        let app = app.clone();
        let caller = caller.clone();
        async move { app.list_incidents(&caller, q).await.unwrap() }
    };
    let all = list(ListIncidents::default()).await;
    assert_eq!(all.items.len(), 7);
    assert!(
        all.items
            .windows(2)
            .all(|w| (w[0].times.detected_at, w[0].id) > (w[1].times.detected_at, w[1].id)),
        "newest-detected first"
    );
    let p0 = list(ListIncidents {
        severities: vec!["P0".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(p0.items.len(), 4);
    let open_db = list(ListIncidents {
        statuses: vec!["triggered".into()],
        categories: vec!["database".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(open_db.items.len(), 3);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = list(ListIncidents {
            limit: Some(3),
            cursor: cursor.clone(),
            ..Default::default()
        })
        .await;
        seen.extend(page.items.iter().map(|i| i.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, all.items.iter().map(|i| i.id).collect::<Vec<_>>());
    let old = app
        .declare_incident(
            &caller,
            DeclareIncident {
                detected_at: Some(Timestamp::now() - SignedDuration::from_hours(24 * 30)),
                ..declare("back-dated", "P3", "database")
            },
        )
        .await
        .unwrap();
    let all = list(ListIncidents::default()).await;
    assert_eq!(
        all.items.last().unwrap().id,
        old.id,
        "a back-dated incident sorts by detection"
    );
    let future = list(ListIncidents {
        detected_from: Some(Timestamp::now() + SignedDuration::from_hours(1)),
        ..Default::default()
    })
    .await;
    assert!(future.items.is_empty());
    let q = store
        .incidents(&IncidentQuery {
            environment: Some("nowhere".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(q.is_empty());
}

async fn text_search_treats_wildcards_literally(store: Arc<dyn Store>) {
    let (app, caller) = app(store.clone()).await;
    app.declare_incident(&caller, declare("CPU 100% on db-1", "P1", "database"))
        .await
        .unwrap();
    app.declare_incident(&caller, declare("CPU 1000 req/s", "P1", "database"))
        .await
        .unwrap();
    app.declare_incident(
        &caller,
        declare("'; DROP TABLE incidents; --", "P1", "database"),
    )
    .await
    .unwrap();
    let search = |t: &str| {
        let (app, caller, t) = (app.clone(), caller.clone(), t.to_string());
        async move {
            app.list_incidents(
                &caller,
                ListIncidents {
                    text: Some(t),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .items
        }
    };
    assert_eq!(search("100%").await.len(), 1);
    assert_eq!(search("cpu").await.len(), 2, "case-insensitive");
    assert_eq!(search("_").await.len(), 0);
    let hostile = search("DROP TABLE").await;
    assert_eq!(hostile.len(), 1);
    assert_eq!(hostile[0].title, "'; DROP TABLE incidents; --");
}

async fn user_names_are_unique(store: Arc<dyn Store>) {
    let (app, caller) = app(store.clone()).await;
    let err = app
        .create_user(
            &caller,
            NewUser {
                name: "ops".into(),
                display_name: String::new(),
                email: None,
                role: Role::Viewer,
                password: PASSWORD.into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "already_exists");
    assert_eq!(store.users().await.unwrap().len(), 1);
}

async fn failures_count_within_a_window(store: Arc<dyn Store>) {
    let t0 = Timestamp::now();
    let window = SignedDuration::from_mins(15);
    let mut tx = store.begin().await.unwrap();
    for _ in 0..3 {
        tx.count_failure("user:x", t0, t0 - window).await.unwrap();
    }
    let later = t0 + SignedDuration::from_mins(16);
    let r = tx
        .count_failure("user:x", later, later - window)
        .await
        .unwrap();
    assert_eq!(r.failures, 1, "a new window starts over");
    tx.lock_key("user:x", later + window).await.unwrap();
    tx.append_audit(&event("test")).await.unwrap();
    tx.commit().await.unwrap();
    let t = store.throttle("user:x").await.unwrap().unwrap();
    assert_eq!(
        t.locked_until.map(|u| u.as_microsecond()),
        Some((later + window).as_microsecond())
    );
}

/// A second open of the same database applies no migration twice and
/// keeps what was written.
async fn reopen_keeps_everything(open: impl AsyncFn() -> Arc<dyn Store>) {
    let first = open().await;
    let (app, caller) = app(first.clone()).await;
    let inc = app
        .declare_incident(&caller, declare("survives", "P1", "database"))
        .await
        .unwrap();
    drop(app);
    let second = open().await;
    let again = second
        .incident(&IncidentKey::Number(inc.number.clone()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, inc);
    assert_eq!(second.users().await.unwrap().len(), 1);
}

/// Two transactions waiting on each other: PostgreSQL gives one up, and
/// that one is a retryable "unavailable" (503), not an internal error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_deadlocks_are_retryable() {
    let Some(s) = support::postgres().await else {
        return;
    };
    let store = s.store.clone();
    let (app, caller) = app(store.clone()).await;
    let a = app
        .declare_incident(&caller, declare("a", "P2", "database"))
        .await
        .unwrap();
    let b = app
        .declare_incident(&caller, declare("b", "P2", "database"))
        .await
        .unwrap();
    let mut first = store.begin().await.unwrap();
    let mut second = store.begin().await.unwrap();
    first
        .incident_for_update(&IncidentKey::Id(a.id))
        .await
        .unwrap();
    second
        .incident_for_update(&IncidentKey::Id(b.id))
        .await
        .unwrap();
    // Each task owns its transaction, so the one given up rolls back as
    // its task ends and lets the other through.
    let crosswise = |mut tx: Box<dyn kiroku_store::Tx>, id| {
        tokio::spawn(async move { tx.incident_for_update(&IncidentKey::Id(id)).await.err() })
    };
    let one = crosswise(first, b.id);
    let two = crosswise(second, a.id);
    let errors: Vec<StoreError> = [one.await.unwrap(), two.await.unwrap()]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(errors[0], StoreError::Unavailable(_)),
        "{errors:?}"
    );
}

/// A full disk fails the write with `DiskFull`, and once there is space
/// the writer begins transactions again as the store does (`BEGIN
/// IMMEDIATE`): SQLite rolled the failed one back by itself, and the
/// writer's own rollback of what the dropped transaction left is refused
/// harmlessly. `max_page_count` on the one writer connection stands in for
/// the disk.
#[tokio::test]
async fn sqlite_writes_again_after_its_disk_was_full() {
    let dir = tempfile::tempdir().unwrap();
    let writer = kiroku_store_sqlite::writer(&dir.path().join("full.db"))
        .await
        .unwrap();
    let pragma = async |sql: &str| {
        sqlx::raw_sql(sql)
            .execute(&mut *writer.acquire().await.unwrap())
            .await
            .unwrap();
    };
    pragma("CREATE TABLE t (x BLOB); PRAGMA max_page_count = 40;").await;
    let insert = "INSERT INTO t VALUES (randomblob(3000))";
    let mut tx = writer.begin().await.unwrap();
    let full = loop {
        if let Err(e) = sqlx::query(insert).execute(&mut *tx).await {
            break kiroku_store_sql::map_err(e);
        }
    };
    assert!(matches!(full, StoreError::DiskFull(_)), "{full:?}");
    drop(tx);
    pragma("PRAGMA max_page_count = 1000000").await;
    let mut tx = writer.begin().await.unwrap();
    sqlx::query(insert).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

/// A SQLite commit lets go of the write lock before its log is synced:
/// the next transaction begins while the sync is still to come, and the
/// commit counts as durable only once a sync has run after it.
#[tokio::test]
async fn sqlite_commit_is_synced_after_the_write_lock_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let store = kiroku_store_sqlite::open(&dir.path().join("k.db"), Default::default())
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.append_audit(&event("first")).await.unwrap();
    let before = store.log_syncs();
    let durable = tx.commit_visible().await.unwrap();
    // The write lock is free: were it still held, this would wait for it.
    let mut next = tokio::time::timeout(std::time::Duration::from_secs(5), store.begin())
        .await
        .expect("the next transaction begins before the sync")
        .unwrap();
    durable.wait().await.unwrap();
    assert!(store.log_syncs() > before, "the commit was not synced");
    next.append_audit(&event("second")).await.unwrap();
    next.commit().await.unwrap();
    assert_eq!(store.audit_size().await.unwrap(), 2);
}

/// `n` requests for a sync of `wal`'s log, made at once.
fn sync_requests(
    wal: &Arc<kiroku_store_sql::WalSync>,
    n: usize,
) -> Vec<tokio::task::JoinHandle<kiroku_store::Result<()>>> {
    (0..n)
        .map(|_| {
            let wal = wal.clone();
            tokio::spawn(async move { wal.sync().await })
        })
        .collect()
}

/// Concurrent requests share syncs, and a request made after a sync ended
/// gets a sync of its own (what it wrote may have come after that one).
#[tokio::test]
async fn log_syncs_are_shared_and_never_early() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("k.db");
    std::fs::write(dir.path().join("k.db-wal"), b"log").unwrap();
    let wal = kiroku_store_sql::WalSync::new(&db);
    let waits = sync_requests(&wal, 64);
    for w in waits {
        w.await.unwrap().unwrap();
    }
    let shared = wal.syncs();
    assert!((1..64).contains(&shared), "{shared} syncs for 64 requests");
    wal.sync().await.unwrap();
    assert_eq!(wal.syncs(), shared + 1);
}

/// A sync that fails fails the requests waiting on it, however many syncs
/// were under way, no request is left waiting for a sync that will not
/// come, and the next request after a repair is synced.
#[tokio::test]
async fn failed_log_syncs_fail_every_waiting_request() {
    let dir = tempfile::tempdir().unwrap();
    // The log's folder is a file: opening the log fails, not as "missing".
    let not_a_folder = dir.path().join("file");
    std::fs::write(&not_a_folder, b"").unwrap();
    let wal = kiroku_store_sql::WalSync::new(&not_a_folder.join("k.db"));
    let waits = sync_requests(&wal, 64);
    for w in waits {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(10), w)
            .await
            .expect("a request was left waiting")
            .unwrap();
        assert!(
            matches!(answer, Err(StoreError::Unavailable(_))),
            "{answer:?}"
        );
    }
    assert_eq!(wal.syncs(), 0);
    // Once the log can be reached, the next request is synced.
    std::fs::remove_file(&not_a_folder).unwrap();
    std::fs::create_dir(&not_a_folder).unwrap();
    std::fs::write(not_a_folder.join("k.db-wal"), b"log").unwrap();
    wal.sync().await.unwrap();
    assert_eq!(wal.syncs(), 1);
}

/// Commits reach the database file without the writer checkpointing: the
/// background thread copies the log. The file is read as if the log did
/// not exist (`immutable`), so only what was copied is seen.
#[tokio::test]
async fn sqlite_log_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let store = kiroku_store_sqlite::open(&path, Default::default())
        .await
        .unwrap();
    for i in 0..20 {
        let mut tx = store.begin().await.unwrap();
        tx.append_audit(&event(&format!("e{i}"))).await.unwrap();
        tx.commit().await.unwrap();
    }
    let url = format!("sqlite://{}?immutable=true", path.display());
    let mut copied = 0;
    for _ in 0..100 {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        // No table yet means nothing copied yet.
        copied = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_events")
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0);
        if copied == 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(copied, 20, "the log was not copied into the database");
}

/// Proofs over a log deep enough for its upper nodes to be kept in memory
/// verify the same read cold and warm, against a root recomputed from
/// every stored event.
#[tokio::test]
async fn proofs_from_kept_upper_nodes_verify() {
    use kiroku_audit::CompactRange;
    use kiroku_audit::merkle::{from_hex, leaf_hash, verify_inclusion};
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        kiroku_store_sqlite::open(&dir.path().join("k.db"), Default::default())
            .await
            .unwrap(),
    );
    let n = 5_000u64;
    let events: Vec<AuditEvent> = (0..n).map(|i| event(&format!("e{i}"))).collect();
    let mut tx = store.begin().await.unwrap();
    tx.append_audit_batch(events).await.unwrap();
    tx.commit().await.unwrap();
    let mut range = CompactRange::new();
    for raw in store.audit_raw(0, n as i64).await.unwrap() {
        range.push(leaf_hash(raw.doc.as_bytes()));
    }
    let root = range.root();
    let app = App::new(
        store,
        kiroku_app::Config::with_zone(jiff::tz::TimeZone::UTC),
    );
    let caller = Caller::local_operator();
    for pass in ["cold", "warm"] {
        for seq in [1, 1024, 1025, 2048, 4097, 4999, n] {
            let p = app.inclusion_proof(&caller, seq, Some(n)).await.unwrap();
            assert_eq!(from_hex(&p.root_hash).unwrap(), root, "{pass}, seq {seq}");
            let path: Vec<_> = p.audit_path.iter().map(|h| from_hex(h).unwrap()).collect();
            let leaf = from_hex(&p.leaf_hash).unwrap();
            verify_inclusion(seq - 1, n, &leaf, &path, &root)
                .unwrap_or_else(|e| panic!("{pass}, seq {seq}: {e:?}"));
        }
    }
}

#[tokio::test]
async fn sqlite_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiroku.db");
    reopen_keeps_everything(async || -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(
            kiroku_store_sqlite::open(&path, Default::default())
                .await
                .unwrap(),
        );
        store
    })
    .await;
}

#[tokio::test]
async fn postgres_reconnect_keeps_everything() {
    let Some(db) = support::PgDatabase::create().await else {
        return;
    };
    let url = db.url.clone();
    reopen_keeps_everything(async || -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(
            kiroku_store_postgres::connect(&url, Default::default())
                .await
                .unwrap(),
        );
        store
    })
    .await;
}

/// Whether appending `events` in one transaction fails, at the append or
/// at the commit; the transaction is gone either way.
async fn is_refused(store: &Arc<dyn Store>, events: Vec<AuditEvent>) -> bool {
    let mut tx = store.begin().await.unwrap();
    match tx.append_audit_batch(events).await {
        Err(_) => true,
        Ok(_) => tx.commit().await.is_err(),
    }
}

async fn batched_appends_keep_the_tree_whole(store: Arc<dyn Store>) {
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.append_audit(&event("first")).await.unwrap(), 1);
    let batch: Vec<AuditEvent> = (0..250).map(|i| event(&format!("b{i}"))).collect();
    let seqs = tx.append_audit_batch(batch.clone()).await.unwrap();
    assert_eq!(seqs, (2..=251).collect::<Vec<_>>());
    assert_eq!(tx.append_audit(&event("last")).await.unwrap(), 252);
    tx.commit().await.unwrap();
    assert_eq!(store.audit_size().await.unwrap(), 252);

    // A batch refused part-way, its first chunks already sent, leaves
    // nothing behind, and the next append carries on from the same tree.
    let mut refused: Vec<AuditEvent> = (0..400).map(|i| event(&format!("x{i}"))).collect();
    refused[200].id = batch[0].id;
    assert!(
        is_refused(&store, refused).await,
        "an event id already in the log was taken again"
    );
    assert_eq!(store.audit_size().await.unwrap(), 252);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.append_audit(&event("after")).await.unwrap(), 253);
    tx.commit().await.unwrap();

    let summary = support::verified(&App::new(store.clone(), support::config())).await;
    assert_eq!(summary.events, 253);
}

/// Two processes on one SQLite file (a server and a CLI command) append to
/// one log in turn: each transaction reads the log's size with its
/// `BEGIN`, so neither takes a number the other took, whatever it saw
/// last. Two transactions too large for SQLite's page cache write pages to
/// the log before they end: one commits (SQLite rewrites frames and their
/// checksums after its commit frame), the other is refused at its last
/// event and leaves nothing behind. Everything reads back after reopening
/// and verifies.
#[tokio::test]
async fn sqlite_stores_on_one_file_append_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let open = async || -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(
            kiroku_store_sqlite::open(&path, Default::default())
                .await
                .unwrap(),
        );
        store
    };
    let (server, cli) = (open().await, open().await);
    let mut expected = 0;
    for round in 0..6 {
        let store = if round % 2 == 0 { &server } else { &cli };
        let events: Vec<AuditEvent> = (0..(1 + round * 3))
            .map(|i| event(&format!("r{round}e{i}")))
            .collect();
        let n = events.len() as i64;
        let mut tx = store.begin().await.unwrap();
        let seqs = tx.append_audit_batch(events).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(seqs, (expected + 1..=expected + n).collect::<Vec<_>>());
        expected += n;
    }
    let large: Vec<AuditEvent> = (0..20_000).map(|i| event(&format!("large{i}"))).collect();
    let mut tx = cli.begin().await.unwrap();
    tx.append_audit_batch(large.clone()).await.unwrap();
    tx.commit().await.unwrap();
    // What the refused one wrote must never land on what the other store
    // commits next.
    let mut spilled: Vec<AuditEvent> = (0..20_000).map(|i| event(&format!("s{i}"))).collect();
    spilled[19_999].id = large[0].id;
    assert!(
        is_refused(&server, spilled).await,
        "an event id already in the log was taken again"
    );
    for store in [&cli, &server] {
        let mut tx = store.begin().await.unwrap();
        tx.append_audit_batch((0..50).map(|i| event(&format!("after{i}"))).collect())
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    drop((server, cli));
    let reopened = open().await;
    let total = expected as u64 + 20_100;
    assert_eq!(reopened.audit_size().await.unwrap(), total);
    let summary = support::verified(&App::new(reopened, support::config())).await;
    assert_eq!(summary.events, total);
}

/// A shipped migration edited after it was applied stops the store from
/// opening, rather than being skipped.
#[tokio::test]
async fn an_edited_migration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiroku.db");
    drop(
        kiroku_store_sqlite::open(&path, Default::default())
            .await
            .unwrap(),
    );
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::raw_sql("UPDATE kiroku_migrations SET checksum = 'edited' WHERE version = 1")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let err = kiroku_store_sqlite::open(&path, Default::default())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("differs from the one applied"),
        "{err}"
    );
}

/// Many incidents' timelines in one read are each incident's own, in order.
async fn timelines_read_together_match_each_read_alone(store: Arc<dyn Store>) {
    let (app, caller) = app(store.clone()).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let i = app
            .declare_incident(&caller, declare(&format!("t{n}"), "P2", "database"))
            .await
            .unwrap();
        for k in 0..n {
            app.add_note(&caller, &IncidentKey::Id(i.id), &format!("note {k}"))
                .await
                .unwrap();
        }
        ids.push(i.id);
    }
    let absent = uuid::Uuid::now_v7();
    let mut asked = ids.clone();
    asked.push(absent);
    let together = store.timelines(&asked).await.unwrap();
    assert!(!together.contains_key(&absent));
    for id in ids {
        assert_eq!(together[&id], store.timeline(id).await.unwrap());
        assert!(!together[&id].is_empty());
    }
}

/// Entries for several incidents appended in one call, more than one
/// statement's worth, each land on their own incident's timeline, in order.
async fn timeline_entries_appended_together_land_on_their_own_incidents(store: Arc<dyn Store>) {
    let (app, caller) = app(store.clone()).await;
    let mut ids = Vec::new();
    for title in ["a", "b"] {
        let i = app
            .declare_incident(&caller, declare(title, "P2", "database"))
            .await
            .unwrap();
        ids.push(i.id);
    }
    let at = Timestamp::now();
    let entries: Vec<TimelineEntry> = (0..250)
        .map(|n| TimelineEntry {
            id: uuid::Uuid::now_v7(),
            incident_id: ids[n % 2],
            at: at + SignedDuration::from_micros(n as i64),
            kind: TimelineKind::Alert,
            actor: None,
            body: format!("entry {n}"),
            data: serde_json::json!({ "n": n }),
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    tx.append_timeline_entries(&entries).await.unwrap();
    tx.append_audit(&event("test_timeline")).await.unwrap();
    tx.commit().await.unwrap();
    for (k, id) in ids.iter().enumerate() {
        let timeline = store.timeline(*id).await.unwrap();
        // Declaring wrote entries of other kinds before these.
        let added: Vec<&str> = timeline
            .iter()
            .filter(|e| e.kind == TimelineKind::Alert)
            .map(|e| e.body.as_str())
            .collect();
        let expected: Vec<String> = (0..250)
            .filter(|n| n % 2 == k)
            .map(|n| format!("entry {n}"))
            .collect();
        assert_eq!(added, expected);
    }
}

/// Intake's read before a batch, small and with more keys and groups than
/// one term takes: every open alert asked for is found once, although the
/// read repeats the last key to round the count up, and every group gets
/// its answer in its own place, the repeated last one too.
async fn intake_reads_many_keys_and_groups(store: Arc<dyn Store>) {
    let (app, admin) = app(store.clone()).await;
    let integration = generic_integration(&app, &admin, "reads").await;
    let routing = serde_json::from_value(serde_json::json!({
        "grouping": { "mode": "labels", "labels": ["team"], "window_minutes": 60 }
    }))
    .unwrap();
    app.set_routing(&admin, "reads", routing, None)
        .await
        .unwrap();
    let body = serde_json::json!({ "events": (0..3).map(|n| serde_json::json!({
        "summary": format!("open {n}"), "source": "host", "severity": "warning",
        "dedup_key": format!("k-{n}"), "labels": { "team": "db" },
    })).collect::<Vec<_>>() });
    let events = generic::parse(body.to_string().as_bytes()).unwrap();
    app.ingest_alerts(&integration, Source::system(), events)
        .await
        .unwrap();
    // The open keys come last, so that the last one is the repeated one.
    let mut keys: Vec<(uuid::Uuid, String)> = (3..2_000)
        .chain(0..3)
        .map(|n| (integration.id, format!("k-{n}")))
        .collect();
    let elsewhere = uuid::Uuid::now_v7();
    keys.extend((0..300).map(|n| (elsewhere, format!("k-{n}"))));
    let one_open = &keys[1_999..2_000];
    let mut tx = store.begin().await.unwrap();
    let (opened, _) = tx
        .open_alerts_and_groups(&[integration.id], one_open, &[])
        .await
        .unwrap();
    let (group_key, incident) = (
        opened[0].grouping_key.clone().unwrap(),
        opened[0].incident_id.unwrap(),
    );
    let group = |n: usize, open: bool| AlertGroup {
        service: integration.service_id,
        key: if open {
            group_key.clone()
        } else {
            format!("g-{n}")
        },
        since: Timestamp::UNIX_EPOCH + SignedDuration::from_secs(n as i64),
    };
    // Small: three groups, read as four.
    let groups: Vec<AlertGroup> = (0..3).map(|n| group(n, n == 2)).collect();
    let (open, found) = tx
        .open_alerts_and_groups(&[integration.id], one_open, &groups)
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(found, [None, None, Some(incident)]);
    // Large: one group with an open incident sits past the first term's
    // 500 groups, another is the last.
    let groups: Vec<AlertGroup> = (0..600).map(|n| group(n, n == 550 || n == 599)).collect();
    let (open, found) = tx
        .open_alerts_and_groups(&[integration.id, elsewhere], &keys, &groups)
        .await
        .unwrap();
    let mut open: Vec<String> = open.into_iter().map(|a| a.dedup_key).collect();
    open.sort();
    assert_eq!(open, ["k-0", "k-1", "k-2"]);
    let mut expected = vec![None; 600];
    expected[550] = Some(incident);
    expected[599] = Some(incident);
    assert_eq!(found, expected);
}

/// Waits until the journal's mark in the database reaches `seq`.
async fn journal_applied(store: &Arc<dyn Store>, journal: uuid::Uuid, seq: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let applied = store.intake_journal_applied(journal).await.unwrap();
        if applied >= seq {
            assert_eq!(applied, seq, "applied past the last record");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "journal applied only to {applied}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A record the applier can neither apply nor keep holds it up: closed
/// meanwhile, it marks nothing, not even the good record after it, so
/// the next start, able to keep the first, drops it and applies the
/// second. Had the second been marked, the first would be passed by.
async fn a_record_that_cannot_be_kept_holds_the_applier(store: Arc<dyn Store>) {
    let (app, admin) = app(store.clone()).await;
    let integration = generic_integration(&app, &admin, "unkept").await;
    let journal = uuid::Uuid::now_v7();
    let bytes = support::journal_file(
        journal,
        &[
            (1, br#"{"not": "a request"}"#.to_vec()),
            (2, support::journal_request(&integration, &["after"])),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intake.journal");
    std::fs::write(&path, &bytes).unwrap();
    // The file the first record would be written to first is a folder.
    let blocker = dir
        .path()
        .join(format!("intake.journal.dropped-{journal}-1.tmp"));
    std::fs::create_dir(&blocker).unwrap();

    let first = App::new(store.clone(), support::config())
        .with_intake_journal(&path, Default::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    first.close_intake_journal().await;
    assert_eq!(store.intake_journal_applied(journal).await.unwrap(), 0);
    assert_eq!(
        open_counts(&store, integration.id, &["after"]).await,
        vec![]
    );

    std::fs::remove_dir(&blocker).unwrap();
    let second = App::new(store.clone(), support::config())
        .with_intake_journal(&path, Default::default())
        .await
        .unwrap();
    journal_applied(&store, journal, 2).await;
    assert_eq!(
        open_counts(&store, integration.id, &["after"]).await,
        vec![("after".to_string(), 1)]
    );
    let kept = dir
        .path()
        .join(format!("intake.journal.dropped-{journal}-1"));
    assert_eq!(std::fs::read(kept).unwrap(), br#"{"not": "a request"}"#);
    // Written under that name first, then linked: nothing is left there.
    assert!(!blocker.exists());
    second.close_intake_journal().await;
}

/// Records applied in one transaction mark the last of them applied, so
/// that a start with them still in the file (a crash before the journal
/// is cut back) applies none of them again. On SQLite the mark once took
/// its values from the statements sent before it in the same round trip,
/// and such a start counted every alert twice.
async fn records_applied_together_are_not_applied_again_on_restart(store: Arc<dyn Store>) {
    let (app, admin) = app(store.clone()).await;
    let integration = generic_integration(&app, &admin, "together").await;
    // Grouped, as monitoring mostly is: later alerts join an open incident.
    let grouped = serde_json::json!({"grouping": {"mode": "labels", "labels": ["alertname"], "window_minutes": 60}});
    app.set_routing(
        &admin,
        "together",
        serde_json::from_value(grouped).unwrap(),
        None,
    )
    .await
    .unwrap();
    let keys: Vec<String> = (0..10).map(|i| format!("t{i}")).collect();
    let records: Vec<(u64, Vec<u8>)> = keys
        .chunks(2)
        .zip(1..)
        .map(|(pair, seq)| {
            let pair: Vec<&str> = pair.iter().map(String::as_str).collect();
            (seq, support::journal_request(&integration, &pair))
        })
        .collect();
    let journal = uuid::Uuid::now_v7();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intake.journal");
    std::fs::write(&path, support::journal_file(journal, &records)).unwrap();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let once: Vec<(String, i64)> = keys.iter().map(|k| (k.to_string(), 1)).collect();
    for _start in 0..2 {
        let started = App::new(store.clone(), support::config())
            .with_intake_journal(&path, Default::default())
            .await
            .unwrap();
        journal_applied(&store, journal, 5).await;
        started.close_intake_journal().await;
        assert_eq!(open_counts(&store, integration.id, &keys).await, once);
        // As a crash before the cut leaves it.
        std::fs::write(&path, support::journal_file(journal, &records)).unwrap();
    }
}

/// A record the journal's applier dropped, because its service's routing
/// no longer compiled under a new severity scheme, is applied by replaying
/// the file it was kept in once the routing is mended: once however many
/// replay it at the same time, with the operator's audit event. Before the
/// mend, edited bytes, and a caller who may not manage services, change
/// nothing.
async fn a_kept_record_is_replayed_once(store: Arc<dyn Store>) {
    // Routed under P0, which p0-p3 has and p1-p4 has not.
    let (old, admin) = app(store.clone()).await;
    let integration = generic_integration(&old, &admin, "replayed").await;
    let routing = |severity: &str| {
        serde_json::from_value::<kiroku_domain::alert::routing::Routing>(
            serde_json::json!({"rules": [{"then": {"severity": severity}}]}),
        )
        .unwrap()
    };
    old.set_routing(&admin, "replayed", routing("P0"), None)
        .await
        .unwrap();
    let mut config = support::config();
    config.rules.severities = kiroku_domain::SeverityScheme::preset("p1-p4").unwrap();
    let journal = uuid::Uuid::now_v7();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intake.journal");
    let record = support::journal_request(&integration, &["k1", "k2"]);
    std::fs::write(
        &path,
        support::journal_file(journal, &[(1, record.clone())]),
    )
    .unwrap();
    let app = App::new(store.clone(), config)
        .with_intake_journal(&path, Default::default())
        .await
        .unwrap();
    journal_applied(&store, journal, 1).await;
    let kept = std::fs::read(
        dir.path()
            .join(format!("intake.journal.dropped-{journal}-1")),
    )
    .unwrap();
    assert_eq!(kept, record);
    let none: Vec<(String, i64)> = vec![];
    assert_eq!(
        open_counts(&store, integration.id, &["k1", "k2"]).await,
        none
    );

    // Unmended, the replay fails as the applier did.
    let e = app
        .replay_kept_intake(&admin, "kept", &kept)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "internal", "{e:?}");
    app.set_routing(&admin, "replayed", routing("P1"), None)
        .await
        .unwrap();
    let edited = [&kept[..], b" "].concat();
    let e = app
        .replay_kept_intake(&admin, "edited", &edited)
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.field()), ("not_kept", Some("file")));
    let login = kiroku_app::LoginRequest {
        name: "ops".into(),
        password: PASSWORD.into(),
        totp_code: None,
    };
    let session = app.login(&Source::system(), login).await.unwrap();
    let responder = Caller {
        principal: Some(
            app.authenticate_session(&session.secret, &Source::system())
                .await
                .unwrap(),
        ),
        source: Source::system(),
    };
    let sender = Caller::integration(integration.id, &integration.name, Source::system());
    for (caller, refused) in [(responder, "forbidden"), (sender, "missing_credentials")] {
        let e = app
            .replay_kept_intake(&caller, "kept", &kept)
            .await
            .unwrap_err();
        assert_eq!(e.code(), refused);
    }
    assert_eq!(
        open_counts(&store, integration.id, &["k1", "k2"]).await,
        none
    );

    let replays: Vec<_> = (0..4)
        .map(|_| {
            let (app, admin, kept) = (app.clone(), admin.clone(), kept.clone());
            tokio::spawn(async move { app.replay_kept_intake(&admin, "kept", &kept).await })
        })
        .collect();
    let mut done = Vec::new();
    for replay in replays {
        match replay.await.unwrap() {
            Ok(replayed) => done.push(replayed),
            Err(e) => assert_eq!((e.code(), e.field()), ("already_exists", Some("file"))),
        }
    }
    assert_eq!(done.len(), 1, "replayed more than once");
    assert_eq!((done[0].journal, done[0].seq), (journal, 1));
    let effects: Vec<_> = done[0].events.iter().map(|a| a.effect).collect();
    assert_eq!(effects, [kiroku_app::Effect::Opened; 2]);
    assert!(done[0].events.iter().all(|a| a.incident_id.is_some()));
    assert_eq!(
        open_counts(&store, integration.id, &["k1", "k2"]).await,
        vec![("k1".to_string(), 1), ("k2".to_string(), 1)]
    );
    let e = app
        .replay_kept_intake(&admin, "kept again", &kept)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "already_exists");

    let audited = store
        .audit_events(&kiroku_store::AuditQuery {
            action: Some("alert_intake_replay".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].target.id, Some(journal.to_string()));
    let change = audited[0].after.as_ref().unwrap();
    assert_eq!(change["sha256"], done[0].sha256);
    assert_eq!(
        (change["seq"].as_u64(), change["events"].as_u64()),
        (Some(1), Some(2))
    );
    support::verified(&app).await;
    app.close_intake_journal().await;
}

/// What a crash leaves in the journal is applied on start: each intact
/// record once, a record that cannot be applied dropped with an audit
/// event and kept in a file of its own, a torn tail cut off; a second
/// start applies nothing again, and new requests carry on the numbering.
async fn the_intake_journal_is_applied_once_across_restarts(store: Arc<dyn Store>) {
    let (app, admin) = app(store.clone()).await;
    let integration = generic_integration(&app, &admin, "journaled").await;
    let request = |keys: &[&str]| support::journal_request(&integration, keys);
    let journal = uuid::Uuid::now_v7();
    let mut bytes = support::journal_file(
        journal,
        &[
            (1, request(&["db-1", "db-2"])),
            (2, br#"{"not": "a request"}"#.to_vec()),
            (3, request(&["db-1", "db-3"])),
        ],
    );
    let whole = bytes.len();
    let torn = support::journal_file(journal, &[(4, request(&["never-answered"]))]);
    bytes.extend_from_slice(&torn[32..torn.len() - 5]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intake.journal");
    std::fs::write(&path, &bytes).unwrap();

    let first = App::new(store.clone(), support::config())
        .with_intake_journal(&path, Default::default())
        .await
        .unwrap();
    journal_applied(&store, journal, 3).await;
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole as u64);
    let expected = vec![
        ("db-1".to_string(), 2),
        ("db-2".into(), 1),
        ("db-3".into(), 1),
    ];
    assert_eq!(
        open_counts(
            &store,
            integration.id,
            &["db-1", "db-2", "db-3", "never-answered"]
        )
        .await,
        expected
    );
    let dropped = store
        .audit_events(&kiroku_store::AuditQuery {
            target_kind: Some("intake_journal".into()),
            outcome: Some("failure".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(
        dropped[0].target.id.as_deref(),
        Some(journal.to_string().as_str())
    );
    assert_eq!(dropped[0].after.as_ref().unwrap()["seq"], 2);
    // Kept, byte for byte, in a file of its own beside the journal.
    let kept_in = dropped[0].after.as_ref().unwrap()["kept_in"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(std::fs::read(&kept_in).unwrap(), br#"{"not": "a request"}"#);
    assert_eq!(std::path::Path::new(&kept_in).parent(), path.parent());
    first.close_intake_journal().await;

    let second = App::new(store.clone(), support::config())
        .with_intake_journal(&path, Default::default())
        .await
        .unwrap();
    let accepted = second
        .ingest_alerts(
            &integration,
            Source::system(),
            generic::parse(br#"{"summary": "disk full", "source": "db-4"}"#).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(accepted[0].effect, kiroku_app::Effect::Journaled);
    assert_eq!(accepted[0].alert_id, None);
    journal_applied(&store, journal, 4).await;
    assert_eq!(
        open_counts(&store, integration.id, &["db-1", "db-2", "db-3"]).await,
        expected
    );
    let key = accepted[0].dedup_key.as_str();
    assert_eq!(
        open_counts(&store, integration.id, &[key]).await,
        vec![(key.to_string(), 1)]
    );
}

/// Closing the journal returns only once its applier has ended: nothing
/// is written behind it, so that shutdown's own audit event and signed
/// head come after the last intake applied.
async fn closing_the_intake_journal_waits_for_its_applier(store: Arc<dyn Store>) {
    let (app, admin) = app(store.clone()).await;
    let integration = generic_integration(&app, &admin, "journaled").await;
    let dir = tempfile::tempdir().unwrap();
    let app = app
        .with_intake_journal(&dir.path().join("intake.journal"), Default::default())
        .await
        .unwrap();
    // Load until the applier is behind when the journal closes: otherwise
    // there is nothing for closing to wait for.
    let mut behind = 0;
    for round in 0..20 {
        let requests = (0..200).map(|r| {
            let (app, integration) = (app.clone(), integration.clone());
            tokio::spawn(async move {
                let events = (0..10)
                    .map(|e| serde_json::json!({"summary": "disk full", "source": format!("db-{round}-{r}-{e}")}))
                    .collect::<Vec<_>>();
                let body = serde_json::json!({ "events": events }).to_string();
                app.ingest_alerts(&integration, Source::system(), generic::parse(body.as_bytes()).unwrap())
                    .await
                    .unwrap();
            })
        });
        for request in requests.collect::<Vec<_>>() {
            request.await.unwrap();
        }
        behind = app.intake_backlog().unwrap();
        if behind > 0 {
            break;
        }
    }
    assert!(behind > 0, "the applier kept up with every round");
    app.close_intake_journal().await;
    let size = store.audit_size().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        store.audit_size().await.unwrap(),
        size,
        "intake was applied after the journal closed"
    );
}

/// The open alerts among `keys` of `integration`, with their counts.
async fn open_counts(
    store: &Arc<dyn Store>,
    integration: uuid::Uuid,
    keys: &[&str],
) -> Vec<(String, i64)> {
    let keys: Vec<_> = keys.iter().map(|k| (integration, k.to_string())).collect();
    let mut tx = store.begin().await.unwrap();
    let (open, _) = tx
        .open_alerts_and_groups(&[integration], &keys, &[])
        .await
        .unwrap();
    let mut counts: Vec<_> = open
        .iter()
        .map(|a| (a.dedup_key.clone(), a.count))
        .collect();
    counts.sort();
    counts
}

/// On SQLite the journal's applier has a thread of its own; it ends with
/// the runtime that started it, as a task of that runtime would, and lets
/// go of the app and its store.
#[test]
fn the_journal_applier_ends_with_the_runtime_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime.block_on(async {
        let store: Arc<dyn Store> = Arc::new(
            kiroku_store_sqlite::open(&dir.path().join("kiroku.db"), Default::default())
                .await
                .unwrap(),
        );
        let app = App::new(store.clone(), support::config())
            .with_intake_journal(&dir.path().join("intake.journal"), Default::default())
            .await
            .unwrap();
        assert_eq!(app.intake_backlog(), Some(0));
        Arc::downgrade(&store)
    });
    drop(runtime);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.upgrade().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the applier still holds the store 10 s after its runtime is gone"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// PostgreSQL away, as in a failover: journaled intake keeps answering
/// with the routing keys and routings it last read, past the time it
/// would read them again; closing the journal does not wait for the
/// database; and what was answered meanwhile is applied once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn journaled_intake_answers_while_postgresql_is_away() {
    use std::time::{Duration, Instant};
    let Some(db) = support::PgDatabase::create().await else {
        return;
    };
    let (relay, url) = support::Relay::to_postgres(&db.url).await;
    let store: Arc<dyn Store> = Arc::new(
        kiroku_store_postgres::connect(&url, Default::default())
            .await
            .unwrap(),
    );
    let (app, admin) = app(store.clone()).await;
    let integration = generic_integration(&app, &admin, "failover").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("intake.journal");
    let journaled = app
        .clone()
        .with_intake_journal(&path, Default::default())
        .await
        .unwrap();
    // As the server takes a request: the routing key looked up, then the
    // events ingested.
    let send = |dedup_key: &str| {
        let (app, key) = (journaled.clone(), integration.key.clone());
        let body =
            serde_json::json!({"summary": "disk full", "source": "db-1", "dedup_key": dedup_key});
        async move {
            let integration = app.integration_by_key(&key).await?.expect("key known");
            let events = generic::parse(body.to_string().as_bytes()).unwrap();
            app.ingest_alerts(&integration, Source::system(), events)
                .await
        }
    };
    send("before").await.unwrap();
    let applied = |app: &App| app.intake_backlog() == Some(0);
    while !applied(&journaled) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    relay.cut();
    // Past how long a routing key (5 s) and a routing (1 s) are used
    // before they are read again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let away = ["away-1", "away-2", "away-3"];
    for key in away {
        let accepted = send(key).await.expect("refused while the database is away");
        assert_eq!(accepted[0].dedup_key, key);
    }
    assert!(!applied(&journaled), "applied with the database away");
    let closing = Instant::now();
    journaled.close_intake_journal().await;
    assert!(
        closing.elapsed() < Duration::from_secs(20),
        "closing waited {:?} for the database",
        closing.elapsed()
    );
    // The journal stays locked while its applier still waits for the
    // database: applied by two, its records would count twice.
    assert!(matches!(
        app.clone()
            .with_intake_journal(&path, Default::default())
            .await,
        Err(kiroku_app::JournalError::InUse(_))
    ));

    relay.mend();
    let deadline = Instant::now() + Duration::from_secs(60);
    let again = loop {
        match app
            .clone()
            .with_intake_journal(&path, Default::default())
            .await
        {
            Ok(again) => break again,
            Err(kiroku_app::JournalError::InUse(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !applied(&again) {
        assert!(
            Instant::now() < deadline,
            "not applied once the database was back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let keys = ["before", "away-1", "away-2", "away-3"];
    assert_eq!(
        open_counts(&store, integration.id, &keys).await,
        vec![
            ("away-1".to_string(), 1),
            ("away-2".into(), 1),
            ("away-3".into(), 1),
            ("before".into(), 1)
        ]
    );
    again.close_intake_journal().await;
}
