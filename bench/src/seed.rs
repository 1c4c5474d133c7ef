//! Seeding large stores for the list benchmarks, through the store's own
//! transactions (each batch appends its audit event, as every write must).

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use kiroku_domain::incident::Rules;
use kiroku_domain::{
    Actor, AuditEvent, BusinessHours, Catalog, Impact, IncidentDraft, Operation, PersonalData,
    SeverityScheme, Source, Status, Target, Transition,
};
use kiroku_store::Store;

const BATCH: usize = 5_000;

/// A small deterministic generator, so that runs seed the same data.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() as usize) % xs.len()]
    }
}

/// Commits a seeding batch with the audit event every write needs.
async fn commit_seeded(
    mut tx: Box<dyn kiroku_store::Tx>,
    kind: &str,
    from: usize,
    to: usize,
) -> anyhow::Result<()> {
    let event = AuditEvent::success(
        Timestamp::now(),
        &Actor::system(),
        &Source::system(),
        Operation::Create,
        "bench_seed",
        Target::new(kind, None),
    )
    .with_change(None, Some(serde_json::json!({ "from": from, "to": to })));
    tx.append_audit(&event).await?;
    tx.commit().await?;
    Ok(())
}

/// Adds incidents `from..to` (numbered by their detection year).
pub async fn incidents(store: &dyn Store, from: usize, to: usize) -> anyhow::Result<()> {
    let zone = TimeZone::get("Asia/Tokyo")?;
    let rules = Rules {
        catalog: Catalog::default(),
        severities: SeverityScheme::preset("p0-p3").unwrap(),
        business_hours: BusinessHours::weekdays(zone.clone()),
    };
    let now = Timestamp::now();
    let words = [
        "DB",
        "API",
        "遅延",
        "接続不可",
        "timeout",
        "disk full",
        "5xx増加",
        "認証失敗",
        "queue backlog",
        "証明書期限切れ",
    ];
    let mut rng = Lcg(from as u64 + 1);
    let mut i = from;
    while i < to {
        let end = (i + BATCH).min(to);
        let mut tx = store.begin().await?;
        for n in i..end {
            let detected =
                now - SignedDuration::from_secs((rng.next() % (2 * 365 * 86_400)) as i64);
            let category = rng.pick(&[
                "information_leak",
                "server_failure",
                "data_loss",
                "unauthorized_access",
                "service_outage",
                "database",
            ]);
            let draft = IncidentDraft {
                title: format!("{} {} #{n}", rng.pick(&words), rng.pick(&words)),
                summary: "benchmark data".into(),
                category: category.into(),
                severity: rng.pick(&["P0", "P1", "P2", "P3"]).into(),
                environment: rng.pick(&["production", "staging", "development"]).into(),
                location: String::new(),
                affected_services: vec![rng.pick(&["api", "web", "batch"]).into()],
                occurred_at: None,
                detected_at: Some(detected),
                impact: Impact::default(),
                personal_data: PersonalData::default(),
                commander: None,
                assignees: vec![],
                reporter: None,
            };
            let prefix = rules.catalog.get(category).unwrap().prefix.clone();
            let year = detected.to_zoned(zone.clone()).year();
            let seq = tx.next_incident_number(&prefix, year).await?;
            let number = kiroku_domain::category::incident_number(&prefix, year, seq);
            let mut incident = draft.declare(&rules, uuid::Uuid::now_v7(), number, detected);
            let steps = (rng.next() % 6) as usize;
            for t in Transition::ALL.into_iter().take(steps) {
                let _ = incident.transition(t, detected + SignedDuration::from_mins(10));
            }
            debug_assert!(Status::ALL.contains(&incident.status));
            tx.insert_incident(&incident).await?;
        }
        commit_seeded(tx, "incident", i, end).await?;
        i = end;
    }
    Ok(())
}

/// Adds `count` triggered incidents, each with an escalation on `policy`
/// whose first level is due at `due(i)`: pending escalations, as a store
/// holds them while people are paged. Returns the incidents' ids.
pub async fn escalations(
    store: &dyn Store,
    policy: &kiroku_domain::escalation::Policy,
    count: usize,
    due: impl Fn(usize) -> Timestamp,
) -> anyhow::Result<Vec<uuid::Uuid>> {
    let mut ids = Vec::with_capacity(count);
    use kiroku_domain::escalation::Escalation;
    let rules = Rules {
        catalog: Catalog::default(),
        severities: SeverityScheme::preset("p0-p3").unwrap(),
        business_hours: BusinessHours::weekdays(TimeZone::get("Asia/Tokyo")?),
    };
    let now = Timestamp::now();
    let year = now.to_zoned(TimeZone::get("Asia/Tokyo")?).year();
    let mut i = 0;
    while i < count {
        let end = (i + BATCH).min(count);
        let mut tx = store.begin().await?;
        for n in i..end {
            let draft = IncidentDraft {
                title: format!("pending escalation #{n}"),
                category: "server_failure".into(),
                // P3: its response-start target is a day away.
                severity: "P3".into(),
                detected_at: Some(now),
                ..IncidentDraft::default()
            };
            let seq = tx.next_incident_number("SRV", year).await?;
            let number = kiroku_domain::category::incident_number("SRV", year, seq);
            let incident = draft.declare(&rules, uuid::Uuid::now_v7(), number, now);
            tx.insert_incident(&incident).await?;
            ids.push(incident.id);
            let mut e = Escalation::start(incident.id, Some(policy), now, None, now);
            e.next_level_at = Some(due(n));
            tx.save_escalation(&e, e.next_level_at).await?;
        }
        commit_seeded(tx, "escalation", i, end).await?;
        i = end;
    }
    Ok(ids)
}
