//! The incident lifecycle: triggered → acknowledged → investigating →
//! mitigated → resolved → closed, as a state machine with its time-stamps.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Triggered,
    Acknowledged,
    Investigating,
    Mitigated,
    Resolved,
    Closed,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Triggered,
        Status::Acknowledged,
        Status::Investigating,
        Status::Mitigated,
        Status::Resolved,
        Status::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Triggered => "triggered",
            Status::Acknowledged => "acknowledged",
            Status::Investigating => "investigating",
            Status::Mitigated => "mitigated",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Open incidents still need someone's attention.
    pub fn is_open(self) -> bool {
        self < Status::Resolved
    }
}

/// A request to move an incident forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Acknowledge,
    Investigate,
    Mitigate,
    Resolve,
    Close,
}

impl Transition {
    pub const ALL: [Transition; 5] = [
        Transition::Acknowledge,
        Transition::Investigate,
        Transition::Mitigate,
        Transition::Resolve,
        Transition::Close,
    ];

    pub fn target(self) -> Status {
        match self {
            Transition::Acknowledge => Status::Acknowledged,
            Transition::Investigate => Status::Investigating,
            Transition::Mitigate => Status::Mitigated,
            Transition::Resolve => Status::Resolved,
            Transition::Close => Status::Closed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Acknowledge => "acknowledge",
            Transition::Investigate => "investigate",
            Transition::Mitigate => "mitigate",
            Transition::Resolve => "resolve",
            Transition::Close => "close",
        }
    }

    pub fn parse(s: &str) -> Option<Transition> {
        Transition::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether `self` may be applied to an incident in `from`.
    ///
    /// Moves only go forward. Any open state may jump ahead (someone may
    /// mitigate without having pressed "acknowledge"), but an incident is
    /// closed only once resolved, and nothing leaves `closed`.
    pub fn allowed_from(self, from: Status) -> bool {
        let to = self.target();
        match self {
            Transition::Close => from == Status::Resolved,
            _ => from < to,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an incident that is {} cannot be moved to {}", current.as_str(), requested.as_str())]
pub struct IllegalTransition {
    pub current: Status,
    pub requested: Status,
}

/// The seven time-stamps of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    pub occurred_at: Option<Timestamp>,
    pub detected_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub response_started_at: Option<Timestamp>,
    pub mitigated_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
}

impl Lifecycle {
    pub fn new(occurred_at: Option<Timestamp>, detected_at: Timestamp) -> Self {
        Lifecycle {
            occurred_at,
            detected_at,
            acknowledged_at: None,
            response_started_at: None,
            mitigated_at: None,
            resolved_at: None,
            closed_at: None,
        }
    }

    /// Applies `t` at time `at` to an incident in state `from`.
    ///
    /// Reaching a state implies the earlier response steps had happened by
    /// then, so their missing stamps are filled with the same time; a stamp
    /// once set is never moved.
    pub fn apply(
        &mut self,
        from: Status,
        t: Transition,
        at: Timestamp,
    ) -> Result<Status, IllegalTransition> {
        let to = t.target();
        if !t.allowed_from(from) {
            return Err(IllegalTransition {
                current: from,
                requested: to,
            });
        }
        let stamps: [(Status, &mut Option<Timestamp>); 5] = [
            (Status::Acknowledged, &mut self.acknowledged_at),
            (Status::Investigating, &mut self.response_started_at),
            (Status::Mitigated, &mut self.mitigated_at),
            (Status::Resolved, &mut self.resolved_at),
            (Status::Closed, &mut self.closed_at),
        ];
        for (state, stamp) in stamps {
            if state <= to && stamp.is_none() {
                *stamp = Some(at);
            }
        }
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn t0() -> Timestamp {
        Timestamp::from_second(1_763_700_000).unwrap()
    }

    #[test]
    fn full_walk_stamps_every_step() {
        let mut lc = Lifecycle::new(None, t0());
        let mut st = Status::Triggered;
        for (i, t) in Transition::ALL.into_iter().enumerate() {
            let at = t0() + jiff::SignedDuration::from_secs(60 * (i as i64 + 1));
            st = lc.apply(st, t, at).unwrap();
            assert_eq!(st, t.target());
        }
        assert_eq!(
            lc.acknowledged_at,
            Some(t0() + jiff::SignedDuration::from_secs(60))
        );
        assert_eq!(
            lc.closed_at,
            Some(t0() + jiff::SignedDuration::from_secs(300))
        );
    }

    #[test]
    fn mitigate_from_triggered_fills_earlier_stamps() {
        let mut lc = Lifecycle::new(None, t0());
        let st = lc
            .apply(Status::Triggered, Transition::Mitigate, t0())
            .unwrap();
        assert_eq!(st, Status::Mitigated);
        assert_eq!(lc.acknowledged_at, Some(t0()));
        assert_eq!(lc.response_started_at, Some(t0()));
        assert_eq!(lc.resolved_at, None);
    }

    #[test]
    fn illegal_moves_name_both_states() {
        let mut lc = Lifecycle::new(None, t0());
        let err = lc
            .apply(Status::Resolved, Transition::Acknowledge, t0())
            .unwrap_err();
        assert_eq!(err.current, Status::Resolved);
        assert_eq!(err.requested, Status::Acknowledged);
        assert!(
            lc.apply(Status::Mitigated, Transition::Close, t0())
                .is_err()
        );
        assert!(
            lc.apply(Status::Acknowledged, Transition::Acknowledge, t0())
                .is_err()
        );
    }

    fn any_status() -> impl Strategy<Value = Status> {
        proptest::sample::select(Status::ALL.to_vec())
    }
    fn any_transition() -> impl Strategy<Value = Transition> {
        proptest::sample::select(Transition::ALL.to_vec())
    }

    proptest! {
        /// Whatever sequence of requests arrives, the state only moves
        /// forward, closed is reached only through resolved, and stamps are
        /// never rewritten once set.
        #[test]
        fn lifecycle_is_monotonic(steps in proptest::collection::vec((any_transition(), 0i64..10_000), 0..40)) {
            let mut lc = Lifecycle::new(None, t0());
            let mut st = Status::Triggered;
            let mut now = t0();
            for (t, dt) in steps {
                now += jiff::SignedDuration::from_secs(dt);
                let before = lc.clone();
                match lc.apply(st, t, now) {
                    Ok(next) => {
                        prop_assert!(next > st);
                        if next == Status::Closed { prop_assert_eq!(st, Status::Resolved); }
                        for (a, b) in [
                            (before.acknowledged_at, lc.acknowledged_at),
                            (before.response_started_at, lc.response_started_at),
                            (before.mitigated_at, lc.mitigated_at),
                            (before.resolved_at, lc.resolved_at),
                        ] {
                            if a.is_some() { prop_assert_eq!(a, b); }
                        }
                        st = next;
                    }
                    Err(e) => {
                        prop_assert_eq!(&lc, &before);
                        prop_assert_eq!(e.current, st);
                    }
                }
            }
        }

        #[test]
        fn status_round_trips(s in any_status()) {
            prop_assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }
}
