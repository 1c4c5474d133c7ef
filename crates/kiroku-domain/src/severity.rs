//! Severity schemes and their response-start targets.

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

/// How soon a response must start once an incident is detected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResponseTarget {
    Within {
        minutes: u32,
    },
    /// By the close of business hours: today's if detected during them,
    /// otherwise the next business day's.
    BusinessHours,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityLevel {
    pub key: String,
    pub label_ja: String,
    pub label_en: String,
    pub response_target: ResponseTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeverityScheme {
    pub name: String,
    /// Most severe first.
    pub levels: Vec<SeverityLevel>,
}

fn level(key: &str, ja: &str, en: &str, target: ResponseTarget) -> SeverityLevel {
    SeverityLevel {
        key: key.into(),
        label_ja: ja.into(),
        label_en: en.into(),
        response_target: target,
    }
}

fn within(minutes: u32) -> ResponseTarget {
    ResponseTarget::Within { minutes }
}

impl SeverityScheme {
    pub const PRESETS: [&'static str; 2] = ["p0-p3", "p1-p4"];

    /// The presets: P0–P3 from the production-service procedure (5 min / 1 h
    /// / 4 h / 24 h) and P1–P4 from the operations design template (15 min /
    /// 30 min / 2 h / business hours).
    pub fn preset(name: &str) -> Option<SeverityScheme> {
        let levels = match name {
            "p0-p3" => vec![
                level("P0", "最高優先度", "Critical", within(5)),
                level("P1", "高優先度", "High", within(60)),
                level("P2", "中優先度", "Medium", within(240)),
                level("P3", "低優先度", "Low", within(1440)),
            ],
            "p1-p4" => vec![
                level("P1", "Critical", "Critical", within(15)),
                level("P2", "High", "High", within(30)),
                level("P3", "Medium", "Medium", within(120)),
                level("P4", "Low", "Low", ResponseTarget::BusinessHours),
            ],
            _ => return None,
        };
        Some(SeverityScheme {
            name: name.into(),
            levels,
        })
    }

    pub fn level(&self, key: &str) -> Option<&SeverityLevel> {
        self.levels.iter().find(|l| l.key == key)
    }

    pub fn keys(&self) -> Vec<&str> {
        self.levels.iter().map(|l| l.key.as_str()).collect()
    }

    /// When the response must have started for an incident of `key`
    /// detected at `detected_at`.
    pub fn response_due(
        &self,
        key: &str,
        detected_at: Timestamp,
        hours: &BusinessHours,
    ) -> Option<Timestamp> {
        match &self.level(key)?.response_target {
            ResponseTarget::Within { minutes } => {
                Some(detected_at + SignedDuration::from_mins(i64::from(*minutes)))
            }
            ResponseTarget::BusinessHours => Some(hours.close_after(detected_at)),
        }
    }
}

/// Business hours in a zone (default Monday–Friday 09:00–18:00 Asia/Tokyo).
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    pub zone: TimeZone,
    pub opens: Time,
    pub closes: Time,
    pub days: Vec<Weekday>,
}

impl BusinessHours {
    pub fn weekdays(zone: TimeZone) -> Self {
        BusinessHours {
            zone,
            opens: Time::constant(9, 0, 0, 0),
            closes: Time::constant(18, 0, 0, 0),
            days: vec![
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
            ],
        }
    }

    /// The first close of business at or after `at`, on a business day.
    pub fn close_after(&self, at: Timestamp) -> Timestamp {
        let local = at.to_zoned(self.zone.clone());
        let mut day = local.date();
        // A week always holds a business day unless none is configured.
        for _ in 0..8 {
            if self.days.contains(&day.weekday())
                && let Ok(close) = day.to_datetime(self.closes).to_zoned(self.zone.clone())
                && close.timestamp() >= at
            {
                return close.timestamp();
            }
            day = match day.checked_add(1.day()) {
                Ok(d) => d,
                Err(_) => break,
            };
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokyo() -> BusinessHours {
        BusinessHours::weekdays(TimeZone::get("Asia/Tokyo").unwrap())
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn p0_p3_targets() {
        let s = SeverityScheme::preset("p0-p3").unwrap();
        let t = ts("2026-11-21T00:00:00Z");
        let due = |k| s.response_due(k, t, &tokyo()).unwrap();
        assert_eq!(due("P0"), ts("2026-11-21T00:05:00Z"));
        assert_eq!(due("P1"), ts("2026-11-21T01:00:00Z"));
        assert_eq!(due("P2"), ts("2026-11-21T04:00:00Z"));
        assert_eq!(due("P3"), ts("2026-11-22T00:00:00Z"));
        assert!(s.response_due("P4", t, &tokyo()).is_none());
    }

    #[test]
    fn p1_p4_targets_and_business_hours() {
        let s = SeverityScheme::preset("p1-p4").unwrap();
        // Friday 2026-11-20 10:00 JST: closes the same day at 18:00 JST.
        let fri_morning = ts("2026-11-20T01:00:00Z");
        assert_eq!(
            s.response_due("P1", fri_morning, &tokyo()).unwrap(),
            ts("2026-11-20T01:15:00Z")
        );
        assert_eq!(
            s.response_due("P4", fri_morning, &tokyo()).unwrap(),
            ts("2026-11-20T09:00:00Z")
        );
        // Saturday 2026-11-21 20:00 JST: Monday 18:00 JST.
        assert_eq!(
            s.response_due("P4", ts("2026-11-21T11:00:00Z"), &tokyo())
                .unwrap(),
            ts("2026-11-23T09:00:00Z")
        );
    }
}
