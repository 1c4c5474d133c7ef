//! On-call schedules: layers of rotating members, stacked so that later
//! layers sit on top of earlier ones, with overrides on top of everything.
//!
//! Hand-offs and restriction windows are wall-clock times in the schedule's
//! zone. Times a clock change skips or repeats resolve with jiff's
//! `compatible` disambiguation, so a daily shift on a DST day is 23 or 25
//! hours long and shifts always follow one another without a hole.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp, ToSpan};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ValidationError;
use crate::validate::{self, SHORT_MAX};

/// The zone of a schedule whose draft names none.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Tokyo";
pub const LAYERS_MAX: usize = 10;
pub const MEMBERS_MAX: usize = 100;
/// A custom rotation hands off at least once a year.
pub const CUSTOM_HOURS_MAX: u32 = 8760;
pub const OVERRIDES_MAX: usize = 1_000;
pub const OVERRIDE_DAYS_MAX: i64 = 366;
/// How far ahead of its creation a schedule must leave nobody uncovered.
pub const COVERAGE_DAYS: i64 = 28;
/// The longest range `Schedule::shifts` computes, which bounds its work.
pub const SHIFTS_DAYS_MAX: i64 = 400;

/// Who is on call when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: Uuid,
    pub name: String,
    /// An IANA zone name, in which hand-offs and windows are read.
    pub time_zone: String,
    /// Later layers sit on top of earlier ones.
    pub layers: Vec<Layer>,
    pub overrides: Vec<Override>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

/// Members taking turns on a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    /// The first hand-off, as wall-clock time in the schedule's zone; every
    /// later hand-off is at the same wall-clock time (daily/weekly) or a
    /// whole number of lengths later (custom).
    pub start: DateTime,
    pub rotation: Rotation,
    /// User ids, taking turns in this order.
    pub members: Vec<Uuid>,
    /// When set, the layer covers only these daily hours (wall clock), e.g.
    /// 09:00–18:00; a window whose end is before its start runs past
    /// midnight (22:00–06:00).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<DailyWindow>,
}

/// How often a layer hands off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rotation {
    /// At the start's wall-clock time every day.
    Daily,
    /// At the start's wall-clock time every seven days.
    Weekly,
    /// Every `hours` of elapsed time, whatever the wall clock says.
    Custom { hours: u32 },
}

/// Daily hours on the wall clock; a window that ends before it starts runs
/// past midnight and belongs to the day it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyWindow {
    pub from: Time,
    pub to: Time,
}

/// Someone standing in for whoever the layers put on call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub id: Uuid,
    pub user: Uuid,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// A stretch of time one user is on call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    pub user: Uuid,
    pub start: Timestamp,
    pub end: Timestamp,
    /// The index of the layer it comes from; None for an override.
    pub layer: Option<usize>,
}

/// A schedule as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDraft {
    pub name: String,
    /// Defaults to [`DEFAULT_TIME_ZONE`].
    #[serde(default)]
    pub time_zone: Option<String>,
    pub layers: Vec<LayerDraft>,
    #[serde(default)]
    pub overrides: Vec<OverrideDraft>,
    /// Accept a schedule that leaves times uncovered.
    #[serde(default)]
    pub allow_gaps: bool,
}

/// A layer as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerDraft {
    pub name: String,
    pub start: DateTime,
    pub rotation: Rotation,
    pub members: Vec<Uuid>,
    #[serde(default)]
    pub restriction: Option<DailyWindow>,
}

/// An override as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideDraft {
    pub user: Uuid,
    pub start: Timestamp,
    pub end: Timestamp,
}

impl ScheduleDraft {
    /// Checks the draft and builds the schedule, taking its id and each
    /// override's from `new_id` (schedule first, then overrides in order).
    /// Unless gaps are allowed, someone must be on call at every moment of
    /// the [`COVERAGE_DAYS`] from `now`.
    pub fn validated(
        self,
        mut new_id: impl FnMut() -> Uuid,
        now: Timestamp,
    ) -> Result<Schedule, ValidationError> {
        let name = validate::line("name", &self.name, SHORT_MAX, true)?;
        let zone_name = self
            .time_zone
            .as_deref()
            .unwrap_or(DEFAULT_TIME_ZONE)
            .trim();
        // The database also answers for names such as `Etc/Unknown` with a
        // zone that has no IANA name; those are refused too.
        let known = jiff::tz::db().get(zone_name).ok().and_then(|zone| {
            let name = zone.iana_name()?.to_string();
            Some((zone, name))
        });
        let Some((zone, time_zone)) = known else {
            return Err(ValidationError::new(
                "time_zone",
                "unknown_time_zone",
                format!("{zone_name:?} is not a known IANA time zone"),
            ));
        };

        if !(1..=LAYERS_MAX).contains(&self.layers.len()) {
            return Err(ValidationError::new(
                "layers",
                "out_of_range",
                format!("must have 1 to {LAYERS_MAX} layers"),
            ));
        }
        let layers = self
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, draft)| draft.validated(&format!("layers[{i}]"), &zone))
            .collect::<Result<Vec<_>, _>>()?;

        if self.overrides.len() > OVERRIDES_MAX {
            return Err(too_many_overrides());
        }
        let id = new_id();
        let mut overrides = Vec::with_capacity(self.overrides.len());
        for (i, draft) in self.overrides.into_iter().enumerate() {
            check_override_range(&format!("overrides[{i}]"), draft.start, draft.end)?;
            overrides.push(Override {
                id: new_id(),
                user: draft.user,
                start: draft.start,
                end: draft.end,
            });
        }
        check_no_overlap(&zone, &overrides)?;

        let schedule = Schedule {
            id,
            name,
            time_zone,
            layers,
            overrides,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        if !self.allow_gaps {
            let horizon = now
                .checked_add(SignedDuration::from_hours(COVERAGE_DAYS * 24))
                .unwrap_or(Timestamp::MAX);
            if let Some((from, until)) = schedule.first_gap(now, horizon) {
                return Err(ValidationError::new(
                    "layers",
                    "schedule_gap",
                    format!(
                        "nobody is on call from {} to {}; add a layer or set allow_gaps",
                        in_zone(&zone, from),
                        in_zone(&zone, until)
                    ),
                ));
            }
        }
        Ok(schedule)
    }
}

impl LayerDraft {
    fn validated(self, field: &str, zone: &TimeZone) -> Result<Layer, ValidationError> {
        let name = validate::line(&format!("{field}.name"), &self.name, SHORT_MAX, true)?;
        if resolve(zone, self.start).is_none() {
            return Err(ValidationError::new(
                &format!("{field}.start"),
                "invalid",
                "is outside the range of representable times",
            ));
        }
        if let Rotation::Custom { hours } = self.rotation
            && !(1..=CUSTOM_HOURS_MAX).contains(&hours)
        {
            return Err(ValidationError::new(
                &format!("{field}.rotation.hours"),
                "out_of_range",
                format!("must be 1 to {CUSTOM_HOURS_MAX}"),
            ));
        }
        if !(1..=MEMBERS_MAX).contains(&self.members.len()) {
            return Err(ValidationError::new(
                &format!("{field}.members"),
                "out_of_range",
                format!("must have 1 to {MEMBERS_MAX} members"),
            ));
        }
        if let Some(window) = self.restriction
            && window.from == window.to
        {
            return Err(ValidationError::new(
                &format!("{field}.restriction"),
                "invalid",
                "must end at a different time than it starts",
            ));
        }
        Ok(Layer {
            name,
            start: self.start,
            rotation: self.rotation,
            members: self.members,
            restriction: self.restriction,
        })
    }
}

impl Schedule {
    /// The schedule's zone; UTC should the stored name somehow be unknown.
    pub fn zone(&self) -> TimeZone {
        jiff::tz::db().get(&self.time_zone).unwrap_or(TimeZone::UTC)
    }

    /// Who is on call at `at`, with the whole of the shift that covers it:
    /// an override if one covers `at`, otherwise the topmost layer that does.
    pub fn oncall(&self, at: Timestamp) -> Option<Shift> {
        let covering = self
            .overrides
            .iter()
            .filter(|o| o.start <= at && at < o.end)
            .max_by_key(|o| o.start);
        if let Some(o) = covering {
            return Some(Shift {
                user: o.user,
                start: o.start,
                end: o.end,
                layer: None,
            });
        }
        let zone = self.zone();
        self.layers
            .iter()
            .enumerate()
            .rev()
            .find_map(|(index, layer)| layer.shift_at(index, &zone, at))
    }

    /// The timeline between `from` and `until` (at most [`SHIFTS_DAYS_MAX`]
    /// days of it) as it finally stands: in time order, clipped to the
    /// range, with upper layers and overrides cut into lower ones and
    /// touching pieces of the same user and layer joined.
    pub fn shifts(&self, from: Timestamp, until: Timestamp) -> Vec<Shift> {
        let until = bounded_until(from, until);
        if from >= until {
            return Vec::new();
        }
        let zone = self.zone();
        let mut timeline = Vec::new();
        for (index, layer) in self.layers.iter().enumerate() {
            timeline = paint(timeline, &layer.shifts_between(index, &zone, from, until));
        }

        // Painting in order of start lets the latest-starting override win
        // where several cover the same time, as `oncall` decides.
        let mut by_start: Vec<&Override> = self.overrides.iter().collect();
        by_start.sort_by_key(|o| o.start);
        let mut overridden = Vec::new();
        for o in by_start {
            let piece = Shift {
                user: o.user,
                start: o.start.max(from),
                end: o.end.min(until),
                layer: None,
            };
            if piece.start < piece.end {
                overridden = paint(overridden, &[piece]);
            }
        }
        join_touching(paint(timeline, &overridden))
    }

    /// The first stretch of [`from`, `until`) when nobody is on call; only
    /// the first [`SHIFTS_DAYS_MAX`] days of the range are examined.
    pub fn first_gap(&self, from: Timestamp, until: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let until = bounded_until(from, until);
        let mut covered_until = from;
        for shift in self.shifts(from, until) {
            if shift.start > covered_until {
                return Some((covered_until, shift.start));
            }
            covered_until = shift.end;
        }
        (covered_until < until).then_some((covered_until, until))
    }

    /// Adds an override after the checks validation applies: a forward,
    /// bounded range, a bounded count and no overlap with existing ones.
    /// The caller records the change (`updated_at`, `version`).
    pub fn add_override(&mut self, o: Override) -> Result<(), ValidationError> {
        if self.overrides.len() >= OVERRIDES_MAX {
            return Err(too_many_overrides());
        }
        let field = format!("overrides[{}]", self.overrides.len());
        check_override_range(&field, o.start, o.end)?;
        let clash = self
            .overrides
            .iter()
            .filter(|existing| existing.start < o.end && o.start < existing.end)
            .min_by_key(|existing| existing.start);
        if let Some(existing) = clash {
            return Err(overlap_error(&self.zone(), &field, &o, existing));
        }
        self.overrides.push(o);
        Ok(())
    }

    /// Removes the override with `id`; false if there is none.
    pub fn remove_override(&mut self, id: Uuid) -> bool {
        let before = self.overrides.len();
        self.overrides.retain(|o| o.id != id);
        self.overrides.len() != before
    }

    /// An RFC 5545 calendar with one event per shift. Event UIDs depend only
    /// on the shift's start and user, so calendar clients that fetch the
    /// feed again see the same events. Pass one user's shifts for a personal
    /// feed of this schedule; [`ical`] makes one across schedules.
    pub fn ical(
        &self,
        shifts: &[Shift],
        name_of: impl Fn(Uuid) -> String,
        now: Timestamp,
    ) -> String {
        ical(
            &self.name,
            &self.time_zone,
            shifts.iter().map(|s| (self, s)),
            name_of,
            now,
        )
    }

    /// Where a shift comes from: its layer's name, or `override`.
    pub fn source_of(&self, shift: &Shift) -> &str {
        match shift.layer {
            Some(index) => self.layers.get(index).map_or("", |l| l.name.as_str()),
            None => "override",
        }
    }
}

/// An RFC 5545 calendar named `name` with one event per (schedule, shift),
/// e.g. one person's shifts in every schedule.
pub fn ical<'a>(
    name: &str,
    zone: &str,
    shifts: impl IntoIterator<Item = (&'a Schedule, &'a Shift)>,
    name_of: impl Fn(Uuid) -> String,
    now: Timestamp,
) -> String {
    let mut out = String::new();
    for (property, value) in [
        ("BEGIN", "VCALENDAR"),
        ("VERSION", "2.0"),
        ("PRODID", "-//Kiroku//On-call//EN"),
        ("CALSCALE", "GREGORIAN"),
        ("METHOD", "PUBLISH"),
    ] {
        push_property(&mut out, property, value);
    }
    push_property(&mut out, "X-WR-CALNAME", &ical_text(name));
    push_property(&mut out, "X-WR-TIMEZONE", &ical_text(zone));
    let stamp = ical_time(now);
    for (schedule, shift) in shifts {
        push_property(&mut out, "BEGIN", "VEVENT");
        push_property(
            &mut out,
            "UID",
            &format!(
                "{}-{}@{}.kiroku",
                shift.start.as_second(),
                shift.user,
                schedule.id
            ),
        );
        push_property(&mut out, "DTSTAMP", &stamp);
        push_property(&mut out, "DTSTART", &ical_time(shift.start));
        push_property(&mut out, "DTEND", &ical_time(shift.end));
        push_property(
            &mut out,
            "SUMMARY",
            &ical_text(&format!("On call: {}", name_of(shift.user))),
        );
        push_property(
            &mut out,
            "DESCRIPTION",
            &ical_text(schedule.source_of(shift)),
        );
        if name != schedule.name {
            push_property(&mut out, "CATEGORIES", &ical_text(&schedule.name));
        }
        push_property(&mut out, "END", "VEVENT");
    }
    push_property(&mut out, "END", "VCALENDAR");
    out
}

/// One turn of a layer: hand-off `n` up to the next hand-off.
struct Turn {
    n: i64,
    start: Timestamp,
    end: Timestamp,
}

impl Layer {
    /// The instant of hand-off `n`, None past the representable range.
    /// Wall-clock hand-offs are a day or more apart and no zone skips more
    /// than a day, so they never run backwards.
    fn handoff(&self, zone: &TimeZone, first: Timestamp, n: i64) -> Option<Timestamp> {
        let after_days = |days: i64| {
            let wall = self
                .start
                .checked_add(Span::new().try_days(days).ok()?)
                .ok()?;
            resolve(zone, wall)
        };
        match self.rotation {
            Rotation::Daily => after_days(n),
            Rotation::Weekly => after_days(n.checked_mul(7)?),
            Rotation::Custom { hours } => {
                let secs = n.checked_mul(i64::from(hours) * 3600)?;
                first.checked_add(SignedDuration::from_secs(secs)).ok()
            }
        }
    }

    /// The usual time between hand-offs; None for a rotation that never
    /// hands off, which covers nothing rather than dividing by zero.
    fn nominal_secs(&self) -> Option<i64> {
        match self.rotation {
            Rotation::Daily => Some(86_400),
            Rotation::Weekly => Some(7 * 86_400),
            Rotation::Custom { hours: 0 } => None,
            Rotation::Custom { hours } => Some(i64::from(hours) * 3600),
        }
    }

    /// The turn that includes `at`; None before the first hand-off.
    fn turn_at(&self, zone: &TimeZone, at: Timestamp) -> Option<Turn> {
        if self.members.is_empty() {
            return None;
        }
        let nominal = self.nominal_secs()?;
        let first = resolve(zone, self.start)?;
        if at < first {
            return None;
        }
        // Estimate from elapsed time; wall-clock hand-offs stray from it
        // only by the zone's offset changes, so a step or two corrects it.
        let mut n = (at.as_second() - first.as_second()) / nominal;
        let mut start = self.handoff(zone, first, n)?;
        while start > at {
            n -= 1;
            start = self.handoff(zone, first, n)?;
        }
        let mut end = self.handoff(zone, first, n + 1);
        while let Some(next) = end
            && next <= at
        {
            n += 1;
            start = next;
            end = self.handoff(zone, first, n + 1);
        }
        Some(Turn {
            n,
            start,
            end: end.unwrap_or(Timestamp::MAX),
        })
    }

    /// Turn `n`'s member on call from `start` to `end`.
    fn shift(&self, index: usize, n: i64, start: Timestamp, end: Timestamp) -> Shift {
        let turns = i64::try_from(self.members.len()).unwrap_or(i64::MAX);
        let member = usize::try_from(n.rem_euclid(turns)).unwrap_or(0);
        Shift {
            user: self.members[member],
            start,
            end,
            layer: Some(index),
        }
    }

    /// The layer's shift covering `at`: its turn, cut by the restriction
    /// window when there is one.
    fn shift_at(&self, index: usize, zone: &TimeZone, at: Timestamp) -> Option<Shift> {
        let turn = self.turn_at(zone, at)?;
        let (start, end) = match &self.restriction {
            None => (turn.start, turn.end),
            Some(window) => {
                let (from, to) = window.containing(zone, at)?;
                (turn.start.max(from), turn.end.min(to))
            }
        };
        Some(self.shift(index, turn.n, start, end))
    }

    /// The layer's own shifts within [`from`, `until`), in order; the same
    /// pieces `shift_at` finds, clipped to the range.
    fn shifts_between(
        &self,
        index: usize,
        zone: &TimeZone,
        from: Timestamp,
        until: Timestamp,
    ) -> Vec<Shift> {
        let mut out = Vec::new();
        let Some(first) = resolve(zone, self.start) else {
            return out;
        };
        let from = from.max(first);
        if from >= until {
            return out;
        }
        let Some(mut turn) = self.turn_at(zone, from) else {
            return out;
        };
        let windows = self.restriction.map(|w| w.between(zone, from, until));
        let mut next_window = 0;
        loop {
            let (start, end) = (turn.start.max(from), turn.end.min(until));
            match &windows {
                None if start < end => out.push(self.shift(index, turn.n, start, end)),
                None => {}
                Some(windows) => {
                    while windows.get(next_window).is_some_and(|w| w.1 <= start) {
                        next_window += 1;
                    }
                    for &(window_start, window_end) in
                        windows[next_window..].iter().take_while(|w| w.0 < end)
                    {
                        let (start, end) = (start.max(window_start), end.min(window_end));
                        if start < end {
                            out.push(self.shift(index, turn.n, start, end));
                        }
                    }
                }
            }
            if turn.end >= until {
                return out;
            }
            turn = Turn {
                n: turn.n + 1,
                start: turn.end,
                end: self
                    .handoff(zone, first, turn.n + 2)
                    .unwrap_or(Timestamp::MAX),
            };
        }
    }
}

impl DailyWindow {
    /// Where the window ends when it opens on `day`.
    fn end_on(&self, zone: &TimeZone, day: Date) -> Option<Timestamp> {
        let end_day = if self.to <= self.from {
            day.tomorrow().ok()?
        } else {
            day
        };
        resolve(zone, end_day.to_datetime(self.to))
    }

    /// The window opening on `day`, if the clocks leave anything of it.
    fn opening_on(&self, zone: &TimeZone, day: Date) -> Option<(Timestamp, Timestamp)> {
        let mut start = resolve(zone, day.to_datetime(self.from))?;
        let end = self.end_on(zone, day)?;
        // A clock change can pull the previous day's window past this one's
        // opening; the earlier day keeps the shared time so windows never
        // overlap.
        if let Some(previous_end) = day.yesterday().ok().and_then(|d| self.end_on(zone, d)) {
            start = start.max(previous_end);
        }
        (start < end).then_some((start, end))
    }

    /// The window that includes `at`. Only windows opening from two days
    /// before `at`'s local date to the day after can reach it.
    fn containing(&self, zone: &TimeZone, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let day = zone.to_datetime(at).date();
        days(
            day.checked_sub(2.days()).unwrap_or(day),
            day.checked_add(1.day()).unwrap_or(day),
        )
        .filter_map(|d| self.opening_on(zone, d))
        .find(|&(start, end)| start <= at && at < end)
    }

    /// The windows that can touch [`from`, `until`), in order.
    fn between(
        &self,
        zone: &TimeZone,
        from: Timestamp,
        until: Timestamp,
    ) -> Vec<(Timestamp, Timestamp)> {
        let first = zone.to_datetime(from).date();
        let last = zone.to_datetime(until).date();
        days(
            first.checked_sub(2.days()).unwrap_or(first),
            last.checked_add(1.day()).unwrap_or(last),
        )
        .filter_map(|d| self.opening_on(zone, d))
        .collect()
    }
}

/// Every date from `first` to `last`, inclusive.
fn days(first: Date, last: Date) -> impl Iterator<Item = Date> {
    std::iter::successors(Some(first), |d| d.tomorrow().ok()).take_while(move |d| *d <= last)
}

/// `until`, pulled in to at most [`SHIFTS_DAYS_MAX`] days after `from`.
fn bounded_until(from: Timestamp, until: Timestamp) -> Timestamp {
    let horizon = from
        .checked_add(SignedDuration::from_hours(SHIFTS_DAYS_MAX * 24))
        .unwrap_or(Timestamp::MAX);
    until.min(horizon)
}

/// A wall-clock time in `zone` as an instant: a time skipped by a clock
/// change moves forward by the change, a repeated one takes its first
/// occurrence.
fn resolve(zone: &TimeZone, wall: DateTime) -> Option<Timestamp> {
    zone.to_ambiguous_timestamp(wall).compatible().ok()
}

/// RFC 3339 with the zone's offset at that instant.
fn in_zone(zone: &TimeZone, at: Timestamp) -> String {
    at.display_with_offset(zone.to_offset(at)).to_string()
}

fn too_many_overrides() -> ValidationError {
    ValidationError::new(
        "overrides",
        "too_many",
        format!("must have at most {OVERRIDES_MAX} overrides"),
    )
}

fn check_override_range(
    field: &str,
    start: Timestamp,
    end: Timestamp,
) -> Result<(), ValidationError> {
    if start >= end {
        return Err(ValidationError::new(
            &format!("{field}.end"),
            "invalid",
            "must be after the start",
        ));
    }
    if end.duration_since(start) > SignedDuration::from_hours(OVERRIDE_DAYS_MAX * 24) {
        return Err(ValidationError::new(
            &format!("{field}.end"),
            "out_of_range",
            format!("an override lasts at most {OVERRIDE_DAYS_MAX} days"),
        ));
    }
    Ok(())
}

/// Rejects the first override (in order of start) that overlaps one
/// starting before it.
fn check_no_overlap(zone: &TimeZone, overrides: &[Override]) -> Result<(), ValidationError> {
    let mut order: Vec<usize> = (0..overrides.len()).collect();
    order.sort_by_key(|&i| overrides[i].start);
    // The override reaching furthest so far: any later-starting one that
    // overlaps an earlier one overlaps this one too.
    let mut furthest: Option<&Override> = None;
    for i in order {
        let current = &overrides[i];
        if let Some(earlier) = furthest
            && current.start < earlier.end
        {
            return Err(overlap_error(
                zone,
                &format!("overrides[{i}]"),
                current,
                earlier,
            ));
        }
        if furthest.is_none_or(|f| current.end > f.end) {
            furthest = Some(current);
        }
    }
    Ok(())
}

fn overlap_error(
    zone: &TimeZone,
    field: &str,
    later: &Override,
    earlier: &Override,
) -> ValidationError {
    ValidationError::new(
        field,
        "overlapping_override",
        format!(
            "the override from {} to {} overlaps the one from {} to {}",
            in_zone(zone, later.start),
            in_zone(zone, later.end),
            in_zone(zone, earlier.start),
            in_zone(zone, earlier.end)
        ),
    )
}

/// `bottom` with `top` laid over it; both sorted and free of overlaps, and
/// so is the result.
fn paint(bottom: Vec<Shift>, top: &[Shift]) -> Vec<Shift> {
    let mut out = Vec::with_capacity(bottom.len() + top.len());
    let mut next_top = 0;
    for mut piece in bottom {
        loop {
            while let Some(t) = top.get(next_top)
                && t.end <= piece.start
            {
                out.push(*t);
                next_top += 1;
            }
            let Some(t) = top.get(next_top).filter(|t| t.start < piece.end) else {
                out.push(piece);
                break;
            };
            if piece.start < t.start {
                out.push(Shift {
                    end: t.start,
                    ..piece
                });
            }
            if t.end >= piece.end {
                // `t` may cover later pieces too; it is emitted once they are cut.
                break;
            }
            piece.start = t.end;
            out.push(*t);
            next_top += 1;
        }
    }
    out.extend_from_slice(&top[next_top..]);
    out
}

/// Joins shifts that touch and share user and layer, such as the turns of a
/// member who follows themselves in the rotation.
fn join_touching(shifts: Vec<Shift>) -> Vec<Shift> {
    let mut out: Vec<Shift> = Vec::with_capacity(shifts.len());
    for shift in shifts {
        match out.last_mut() {
            Some(last)
                if last.end == shift.start
                    && last.user == shift.user
                    && last.layer == shift.layer =>
            {
                last.end = shift.end;
            }
            _ => out.push(shift),
        }
    }
    out
}

/// A UTC date-time in iCalendar's basic form, e.g. `19700101T000000Z`.
fn ical_time(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// An iCalendar TEXT value: backslash, semicolon, comma and line breaks
/// escaped, other control characters (which TEXT forbids) dropped.
fn ical_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.replace("\r\n", "\n").replace('\r', "\n").chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `name:value` as a content line: folded so that no line exceeds
/// 75 octets (a continuation starts with a space), never inside a UTF-8
/// character, and ended with CRLF.
fn push_property(out: &mut String, name: &str, value: &str) {
    const LINE_OCTETS_MAX: usize = 75;
    let mut octets = 0;
    for c in name.chars().chain([':']).chain(value.chars()) {
        if octets + c.len_utf8() > LINE_OCTETS_MAX {
            out.push_str("\r\n ");
            octets = 1;
        }
        out.push(c);
        octets += c.len_utf8();
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Uuid = Uuid::from_u128(1);
    const B: Uuid = Uuid::from_u128(2);
    const C: Uuid = Uuid::from_u128(3);
    const D: Uuid = Uuid::from_u128(4);

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn wall(s: &str) -> DateTime {
        s.parse().unwrap()
    }

    fn hours(h: i64) -> SignedDuration {
        SignedDuration::from_hours(h)
    }

    fn counter() -> impl FnMut() -> Uuid {
        let mut n = 1000;
        move || {
            n += 1;
            Uuid::from_u128(n)
        }
    }

    fn layer(start: &str, rotation: Rotation, members: &[Uuid]) -> Layer {
        Layer {
            name: "primary".into(),
            start: wall(start),
            rotation,
            members: members.to_vec(),
            restriction: None,
        }
    }

    fn window(from: &str, to: &str) -> Option<DailyWindow> {
        Some(DailyWindow {
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
        })
    }

    fn schedule(zone: &str, layers: Vec<Layer>) -> Schedule {
        Schedule {
            id: Uuid::from_u128(99),
            name: "SRE".into(),
            time_zone: zone.into(),
            layers,
            overrides: Vec::new(),
            created_at: Timestamp::UNIX_EPOCH,
            updated_at: Timestamp::UNIX_EPOCH,
            version: 1,
        }
    }

    fn draft(layers: Vec<LayerDraft>) -> ScheduleDraft {
        ScheduleDraft {
            name: "SRE".into(),
            time_zone: None,
            layers,
            overrides: Vec::new(),
            allow_gaps: false,
        }
    }

    fn layer_draft(start: &str, restriction: Option<DailyWindow>) -> LayerDraft {
        LayerDraft {
            name: "primary".into(),
            start: wall(start),
            rotation: Rotation::Daily,
            members: vec![A, B],
            restriction,
        }
    }

    fn override_draft(start: &str, end: &str) -> OverrideDraft {
        OverrideDraft {
            user: D,
            start: ts(start),
            end: ts(end),
        }
    }

    /// (user, start, end) of the shift covering `at`.
    fn oncall_at(s: &Schedule, at: &str) -> (Uuid, Timestamp, Timestamp) {
        let shift = s.oncall(ts(at)).unwrap();
        (shift.user, shift.start, shift.end)
    }

    #[test]
    fn weekly_rotation_hands_off_monday_morning_in_tokyo() {
        // 2026-11-30 is a Monday; 10:00 JST is 01:00Z.
        let s = schedule(
            "Asia/Tokyo",
            vec![layer("2026-11-30T10:00", Rotation::Weekly, &[A, B, C])],
        );
        assert_eq!(s.oncall(ts("2026-11-30T00:59:59Z")), None);
        assert_eq!(
            oncall_at(&s, "2026-12-07T00:59:59Z"),
            (A, ts("2026-11-30T01:00:00Z"), ts("2026-12-07T01:00:00Z"))
        );
        assert_eq!(
            oncall_at(&s, "2026-12-07T01:00:00Z"),
            (B, ts("2026-12-07T01:00:00Z"), ts("2026-12-14T01:00:00Z"))
        );
        let users: Vec<Uuid> = s
            .shifts(ts("2026-11-30T01:00:00Z"), ts("2026-12-21T01:00:00Z"))
            .iter()
            .map(|sh| sh.user)
            .collect();
        assert_eq!(users, [A, B, C]);

        // Ten years on, the shift found directly still starts on a Monday
        // at 10:00 and hands over to the next member.
        let zone = s.zone();
        let later = s.oncall(ts("2036-12-03T05:00:00Z")).unwrap();
        let local = zone.to_datetime(later.start);
        assert_eq!(local.weekday(), jiff::civil::Weekday::Monday);
        assert_eq!(local.time(), Time::constant(10, 0, 0, 0));
        assert_eq!(later.end.duration_since(later.start), hours(7 * 24));
        let next = s.oncall(later.end).unwrap();
        let position = |u: Uuid| [A, B, C].iter().position(|&m| m == u).unwrap();
        assert_eq!(position(next.user), (position(later.user) + 1) % 3);
    }

    #[test]
    fn daily_rotation_across_new_york_clock_changes() {
        let s = schedule(
            "America/New_York",
            vec![layer("2026-03-01T09:00", Rotation::Daily, &[A, B])],
        );
        // Spring forward on 2026-03-08: 09:00 EST to 09:00 EDT is 23 hours.
        assert_eq!(
            oncall_at(&s, "2026-03-08T00:00:00Z"),
            (A, ts("2026-03-07T14:00:00Z"), ts("2026-03-08T13:00:00Z"))
        );
        // Fall back on 2026-11-01: 09:00 EDT to 09:00 EST is 25 hours.
        let (_, start, end) = oncall_at(&s, "2026-11-01T00:00:00Z");
        assert_eq!(
            (start, end),
            (ts("2026-10-31T13:00:00Z"), ts("2026-11-01T14:00:00Z"))
        );
    }

    #[test]
    fn hand_offs_at_times_the_clock_skips_or_repeats() {
        // 02:30 does not exist on 2026-03-08 and is read as 03:30 EDT.
        let s = schedule(
            "America/New_York",
            vec![layer("2026-03-01T02:30", Rotation::Daily, &[A, B])],
        );
        let shifts = s.shifts(ts("2026-03-07T07:30:00Z"), ts("2026-03-09T06:30:00Z"));
        let bounds: Vec<_> = shifts.iter().map(|sh| (sh.start, sh.end)).collect();
        assert_eq!(
            bounds,
            [
                (ts("2026-03-07T07:30:00Z"), ts("2026-03-08T07:30:00Z")),
                (ts("2026-03-08T07:30:00Z"), ts("2026-03-09T06:30:00Z")),
            ]
        );

        // 01:30 happens twice on 2026-11-01; the first (EDT) one counts.
        let s = schedule(
            "America/New_York",
            vec![layer("2026-10-01T01:30", Rotation::Daily, &[A, B])],
        );
        let (_, start, end) = oncall_at(&s, "2026-11-01T06:00:00Z");
        assert_eq!(
            (start, end),
            (ts("2026-11-01T05:30:00Z"), ts("2026-11-02T06:30:00Z"))
        );
    }

    #[test]
    fn custom_rotation_counts_elapsed_hours() {
        let s = schedule(
            "Asia/Tokyo",
            vec![layer(
                "2026-12-01T09:00",
                Rotation::Custom { hours: 12 },
                &[A, B],
            )],
        );
        assert_eq!(oncall_at(&s, "2026-12-01T11:59:59Z").0, A);
        assert_eq!(
            oncall_at(&s, "2026-12-01T12:00:00Z"),
            (B, ts("2026-12-01T12:00:00Z"), ts("2026-12-02T00:00:00Z"))
        );
        assert_eq!(oncall_at(&s, "2026-12-02T00:00:00Z").0, A);

        // Across a clock change the hand-off keeps to elapsed time, so the
        // wall clock moves from 09:00 to 10:00.
        let s = schedule(
            "America/New_York",
            vec![layer(
                "2026-03-07T09:00",
                Rotation::Custom { hours: 12 },
                &[A, B],
            )],
        );
        let (_, start, _) = oncall_at(&s, "2026-03-08T15:00:00Z");
        assert_eq!(start, ts("2026-03-08T14:00:00Z"));
        assert_eq!(s.zone().to_datetime(start), wall("2026-03-08T10:00"));
    }

    #[test]
    fn restriction_windows_follow_the_wall_clock() {
        // 22:00–06:00 belongs to the day it starts and is cut by hand-offs.
        let mut night = layer("2026-12-01T09:00", Rotation::Daily, &[A, B]);
        night.restriction = window("22:00", "06:00");
        let s = schedule("Asia/Tokyo", vec![night]);
        assert_eq!(
            oncall_at(&s, "2026-12-01T18:00:00Z"),
            (A, ts("2026-12-01T13:00:00Z"), ts("2026-12-01T21:00:00Z"))
        );
        assert_eq!(s.oncall(ts("2026-12-02T01:00:00Z")), None);

        // 01:00–03:00 on the night New York springs forward lasts an hour.
        let mut early = layer("2026-03-01T00:00", Rotation::Weekly, &[A]);
        early.restriction = window("01:00", "03:00");
        let s = schedule("America/New_York", vec![early]);
        assert_eq!(
            oncall_at(&s, "2026-03-08T06:30:00Z"),
            (A, ts("2026-03-08T06:00:00Z"), ts("2026-03-08T07:00:00Z"))
        );
    }

    fn business_hours_over_round_the_clock() -> Schedule {
        let mut daytime = layer("2026-11-30T09:00", Rotation::Daily, &[B, C]);
        daytime.name = "daytime".into();
        daytime.restriction = window("09:00", "18:00");
        schedule(
            "Asia/Tokyo",
            vec![layer("2026-11-30T10:00", Rotation::Weekly, &[A]), daytime],
        )
    }

    fn shift(user: Uuid, start: &str, end: &str, layer: Option<usize>) -> Shift {
        Shift {
            user,
            start: ts(start),
            end: ts(end),
            layer,
        }
    }

    #[test]
    fn upper_layer_covers_its_hours() {
        let s = business_hours_over_round_the_clock();
        // Tuesday 10:00 JST: the daytime layer's second turn.
        assert_eq!(
            s.oncall(ts("2026-12-01T01:00:00Z")),
            Some(shift(
                C,
                "2026-12-01T00:00:00Z",
                "2026-12-01T09:00:00Z",
                Some(1)
            ))
        );
        // Tuesday 20:00 JST: the round-the-clock layer's weekly turn.
        assert_eq!(
            s.oncall(ts("2026-12-01T11:00:00Z")),
            Some(shift(
                A,
                "2026-11-30T01:00:00Z",
                "2026-12-07T01:00:00Z",
                Some(0)
            ))
        );
        assert_eq!(
            s.shifts(ts("2026-11-30T15:00:00Z"), ts("2026-12-01T15:00:00Z")),
            [
                shift(A, "2026-11-30T15:00:00Z", "2026-12-01T00:00:00Z", Some(0)),
                shift(C, "2026-12-01T00:00:00Z", "2026-12-01T09:00:00Z", Some(1)),
                shift(A, "2026-12-01T09:00:00Z", "2026-12-01T15:00:00Z", Some(0)),
            ]
        );
    }

    #[test]
    fn an_override_wins() {
        let mut s = business_hours_over_round_the_clock();
        let id = Uuid::from_u128(50);
        s.add_override(Override {
            id,
            user: D,
            start: ts("2026-12-01T03:00:00Z"),
            end: ts("2026-12-01T05:00:00Z"),
        })
        .unwrap();
        assert_eq!(
            s.oncall(ts("2026-12-01T04:00:00Z")),
            Some(shift(
                D,
                "2026-12-01T03:00:00Z",
                "2026-12-01T05:00:00Z",
                None
            ))
        );
        assert_eq!(
            s.shifts(ts("2026-12-01T00:00:00Z"), ts("2026-12-01T09:00:00Z")),
            [
                shift(C, "2026-12-01T00:00:00Z", "2026-12-01T03:00:00Z", Some(1)),
                shift(D, "2026-12-01T03:00:00Z", "2026-12-01T05:00:00Z", None),
                shift(C, "2026-12-01T05:00:00Z", "2026-12-01T09:00:00Z", Some(1)),
            ]
        );
        assert!(s.remove_override(id));
        assert!(!s.remove_override(id));
        assert_eq!(oncall_at(&s, "2026-12-01T04:00:00Z").0, C);
    }

    #[test]
    fn overlapping_overrides_are_rejected() {
        let mut d = draft(vec![layer_draft("2026-11-01T09:00", None)]);
        d.overrides = vec![
            override_draft("2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z"),
            override_draft("2026-12-01T00:00:00Z", "2026-12-02T01:00:00Z"),
        ];
        let err = d
            .validated(counter(), ts("2026-12-01T00:00:00Z"))
            .unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.code),
            ("overrides[0]", "overlapping_override")
        );
        assert_eq!(
            err.message,
            "the override from 2026-12-02T09:00:00+09:00 to 2026-12-03T09:00:00+09:00 \
             overlaps the one from 2026-12-01T09:00:00+09:00 to 2026-12-02T10:00:00+09:00"
        );

        // Touching is not overlapping; ids come from the generator in order.
        let mut d = draft(vec![layer_draft("2026-11-01T09:00", None)]);
        d.overrides = vec![
            override_draft("2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z"),
            override_draft("2026-12-01T00:00:00Z", "2026-12-02T00:00:00Z"),
        ];
        let mut s = d.validated(counter(), ts("2026-12-01T00:00:00Z")).unwrap();
        assert_eq!(s.id, Uuid::from_u128(1001));
        assert_eq!(s.overrides[1].id, Uuid::from_u128(1003));

        let err = s
            .add_override(Override {
                id: Uuid::from_u128(7),
                user: A,
                start: ts("2026-12-02T12:00:00Z"),
                end: ts("2026-12-04T00:00:00Z"),
            })
            .unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.code),
            ("overrides[2]", "overlapping_override")
        );
        assert!(
            err.message
                .contains("2026-12-02T09:00:00+09:00 to 2026-12-03T09:00:00+09:00")
        );
        s.add_override(Override {
            id: Uuid::from_u128(7),
            user: A,
            start: ts("2026-12-03T00:00:00Z"),
            end: ts("2026-12-04T00:00:00Z"),
        })
        .unwrap();
        assert_eq!(s.overrides.len(), 3);
    }

    #[test]
    fn a_gap_is_rejected_unless_allowed() {
        let now = ts("2026-12-01T01:00:00Z");
        let daytime_only = || {
            draft(vec![layer_draft(
                "2026-12-01T09:00",
                window("09:00", "18:00"),
            )])
        };
        let err = daytime_only().validated(counter(), now).unwrap_err();
        assert_eq!((err.field.as_str(), err.code), ("layers", "schedule_gap"));
        assert_eq!(
            err.message,
            "nobody is on call from 2026-12-01T18:00:00+09:00 to 2026-12-02T09:00:00+09:00; \
             add a layer or set allow_gaps"
        );

        let mut allowed = daytime_only();
        allowed.allow_gaps = true;
        let s = allowed.validated(counter(), now).unwrap();
        assert_eq!(s.time_zone, DEFAULT_TIME_ZONE);
        assert_eq!((s.created_at, s.updated_at, s.version), (now, now, 1));

        // An override can fill the gap.
        let mut filled = daytime_only();
        filled.overrides = (0..28)
            .map(|day| {
                let start = ts("2026-12-01T09:00:00Z") + hours(24 * day);
                OverrideDraft {
                    user: D,
                    start,
                    end: start + hours(15),
                }
            })
            .collect();
        assert!(filled.validated(counter(), now).is_ok());
    }

    #[test]
    fn a_layer_starting_later_leaves_a_gap_until_then() {
        let now = ts("2026-12-01T01:00:00Z");
        let err = draft(vec![layer_draft("2026-12-02T10:00", None)])
            .validated(counter(), now)
            .unwrap_err();
        assert_eq!(err.code, "schedule_gap");
        assert!(err.message.starts_with(
            "nobody is on call from 2026-12-01T10:00:00+09:00 to 2026-12-02T10:00:00+09:00;"
        ));
        // A layer that started earlier leaves no gap from now on.
        assert!(
            draft(vec![layer_draft("2026-11-01T10:00", None)])
                .validated(counter(), now)
                .is_ok()
        );
    }

    #[test]
    fn checks_name_their_field() {
        let now = ts("2026-12-01T00:00:00Z");
        let code = |d: ScheduleDraft| {
            let err = d.validated(counter(), now).unwrap_err();
            (err.field, err.code)
        };
        let good = || draft(vec![layer_draft("2026-11-01T09:00", None)]);
        let pair = |f: &str, c: &'static str| (f.to_string(), c);

        for unknown in ["Mars/Olympus_Mons", "Etc/Unknown", ""] {
            let mut d = good();
            d.time_zone = Some(unknown.into());
            assert_eq!(code(d), pair("time_zone", "unknown_time_zone"));
        }
        let mut d = good();
        d.time_zone = Some("america/new_york".into());
        assert_eq!(
            d.validated(counter(), now).unwrap().time_zone,
            "America/New_York"
        );
        let mut d = good();
        d.name = " ".into();
        assert_eq!(code(d), pair("name", "required"));
        assert_eq!(code(draft(vec![])), pair("layers", "out_of_range"));
        assert_eq!(
            code(draft(
                (0..11)
                    .map(|_| layer_draft("2026-11-01T09:00", None))
                    .collect()
            )),
            pair("layers", "out_of_range")
        );
        let mut d = good();
        d.layers[0].members.clear();
        assert_eq!(code(d), pair("layers[0].members", "out_of_range"));
        let mut d = good();
        d.layers[0].name = "".into();
        assert_eq!(code(d), pair("layers[0].name", "required"));
        for bad in [0, CUSTOM_HOURS_MAX + 1] {
            let mut d = good();
            d.layers[0].rotation = Rotation::Custom { hours: bad };
            assert_eq!(code(d), pair("layers[0].rotation.hours", "out_of_range"));
        }
        let mut d = good();
        d.layers[0].restriction = window("09:00", "09:00");
        assert_eq!(code(d), pair("layers[0].restriction", "invalid"));
        let mut d = good();
        d.overrides = vec![override_draft(
            "2026-12-02T00:00:00Z",
            "2026-12-02T00:00:00Z",
        )];
        assert_eq!(code(d), pair("overrides[0].end", "invalid"));
        let mut d = good();
        d.overrides = vec![override_draft(
            "2026-12-02T00:00:00Z",
            "2027-12-04T00:00:00Z",
        )];
        assert_eq!(code(d), pair("overrides[0].end", "out_of_range"));
        let mut d = good();
        d.overrides = (0..=OVERRIDES_MAX as i64)
            .map(|i| {
                let start = now + hours(i);
                OverrideDraft {
                    user: D,
                    start,
                    end: start + hours(1),
                }
            })
            .collect();
        assert_eq!(code(d), pair("overrides", "too_many"));

        // The same member may take two turns.
        let mut d = good();
        d.layers[0].members = vec![A, B, A];
        assert!(d.validated(counter(), now).is_ok());
    }

    #[test]
    fn drafts_read_from_json() {
        let json = serde_json::json!({
            "name": "SRE",
            "time_zone": "America/New_York",
            "layers": [{
                "name": "daytime",
                "start": "2026-12-01T09:00:00",
                "rotation": {"kind": "custom", "hours": 12},
                "members": [A],
                "restriction": {"from": "09:00", "to": "18:00:00"}
            }],
            "allow_gaps": true
        });
        let d: ScheduleDraft = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(d.layers[0].restriction, window("09:00", "18:00"));
        let s = d.validated(counter(), ts("2026-12-01T00:00:00Z")).unwrap();
        let stored = serde_json::to_value(&s).unwrap();
        assert_eq!(serde_json::from_value::<Schedule>(stored).unwrap(), s);

        let mut unknown = json;
        unknown["layers"][0]["colour"] = "red".into();
        assert!(serde_json::from_value::<ScheduleDraft>(unknown).is_err());
    }

    #[test]
    fn ical_feed() {
        let mut s = business_hours_over_round_the_clock();
        s.name = "SRE, primary; a\\b\nc".into();
        let long_name = "山田太郎（インシデント対応チーム・プラットフォーム基盤担当）";
        let name_of = |u: Uuid| {
            if u == C {
                long_name.to_string()
            } else {
                format!("user {u}")
            }
        };
        let shifts = [
            shift(A, "2026-11-30T15:00:00Z", "2026-12-01T00:00:00Z", Some(0)),
            shift(C, "2026-12-01T00:00:00Z", "2026-12-01T09:00:00Z", Some(1)),
            shift(D, "2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z", None),
        ];
        let now = ts("2026-11-29T12:34:56Z");
        let feed = s.ical(&shifts, name_of, now);

        assert!(
            feed.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Kiroku//On-call//EN\r\n")
        );
        assert!(feed.ends_with("END:VCALENDAR\r\n"));
        assert!(!feed.replace("\r\n", "").contains(['\r', '\n']));
        assert!(feed.split("\r\n").all(|line| line.len() <= 75));
        assert!(feed.contains("\r\n "), "the long name is folded");

        let unfolded = feed.replace("\r\n ", "");
        assert!(unfolded.contains("\r\nX-WR-CALNAME:SRE\\, primary\\; a\\\\b\\nc\r\n"));
        assert!(unfolded.contains("\r\nX-WR-TIMEZONE:Asia/Tokyo\r\n"));
        assert!(unfolded.contains(&format!("\r\nSUMMARY:On call: {long_name}\r\n")));
        assert_eq!(unfolded.matches("BEGIN:VEVENT\r\n").count(), 3);
        assert_eq!(unfolded.matches("END:VEVENT\r\n").count(), 3);
        assert_eq!(
            unfolded.matches("\r\nDTSTAMP:20261129T123456Z\r\n").count(),
            3
        );
        assert!(unfolded.contains(&format!(
            "\r\nUID:1796083200-{C}@{}.kiroku\r\nDTSTAMP:20261129T123456Z\r\n\
             DTSTART:20261201T000000Z\r\nDTEND:20261201T090000Z\r\n",
            s.id
        )));
        assert!(unfolded.contains("\r\nDESCRIPTION:daytime\r\n"));
        assert!(unfolded.contains("\r\nDESCRIPTION:override\r\n"));

        let mine: Vec<Shift> = shifts.iter().copied().filter(|sh| sh.user == D).collect();
        let personal = s.ical(&mine, name_of, now);
        assert_eq!(personal.matches("BEGIN:VEVENT").count(), 1);
    }

    const ZONES: [&str; 5] = [
        "Asia/Tokyo",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "UTC",
    ];

    /// A wall-clock time within two years of 2026, on a quarter hour so
    /// that clock changes are hit.
    fn arb_wall() -> impl Strategy<Value = DateTime> {
        (-730i64..730, 0i8..24, 0i8..4).prop_map(|(day, hour, quarter)| {
            wall("2026-01-01T00:00")
                .checked_add(Span::new().days(day).hours(hour).minutes(quarter * 15))
                .unwrap()
        })
    }

    fn arb_time() -> impl Strategy<Value = Time> {
        (0i8..24, 0i8..4).prop_map(|(h, q)| Time::constant(h, q * 15, 0, 0))
    }

    fn arb_layer() -> impl Strategy<Value = Layer> {
        let rotation = prop_oneof![
            Just(Rotation::Daily),
            Just(Rotation::Weekly),
            (1u32..=72).prop_map(|hours| Rotation::Custom { hours }),
        ];
        let restriction = proptest::option::of(
            (arb_time(), arb_time())
                .prop_filter("a window ends when it does not start", |(f, t)| f != t)
                .prop_map(|(from, to)| DailyWindow { from, to }),
        );
        // Few distinct users so that a member may follow themselves.
        let members = proptest::collection::vec((1u128..=3).prop_map(Uuid::from_u128), 1..=5);
        (arb_wall(), rotation, members, restriction).prop_map(
            |(start, rotation, members, restriction)| Layer {
                name: "layer".into(),
                start,
                rotation,
                members,
                restriction,
            },
        )
    }

    fn arb_instant() -> impl Strategy<Value = Timestamp> {
        let base = ts("2026-01-01T00:00:00Z").as_second();
        let two_years: i64 = 2 * 366 * 86_400;
        (-two_years..two_years).prop_map(move |s| Timestamp::from_second(base + s).unwrap())
    }

    fn arb_override() -> impl Strategy<Value = Override> {
        (arb_instant(), 1i64..200_000, 4u128..=5).prop_map(|(start, secs, user)| Override {
            id: Uuid::from_u128(user * 100),
            user: Uuid::from_u128(user),
            start,
            end: start + SignedDuration::from_secs(secs),
        })
    }

    fn arb_schedule() -> impl Strategy<Value = Schedule> {
        (
            0..ZONES.len(),
            proptest::collection::vec(arb_layer(), 1..=3),
            proptest::collection::vec(arb_override(), 0..=2),
        )
            .prop_map(|(zone, layers, overrides)| Schedule {
                overrides,
                ..schedule(ZONES[zone], layers)
            })
    }

    proptest! {
        // Cases are cheap, and more of them land on clock changes.
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn timeline_agrees_with_oncall(
            s in arb_schedule(),
            from in arb_instant(),
            span_hours in 1i64..=45 * 24,
            probes in proptest::collection::vec(0.0f64..1.0, 16),
        ) {
            let until = from + hours(span_hours);
            let shifts = s.shifts(from, until);
            for sh in &shifts {
                prop_assert!(from <= sh.start && sh.start < sh.end && sh.end <= until, "{sh:?}");
            }
            for pair in shifts.windows(2) {
                prop_assert!(pair[0].end <= pair[1].start, "{pair:?}");
                prop_assert!(
                    pair[0].end < pair[1].start
                        || pair[0].user != pair[1].user
                        || pair[0].layer != pair[1].layer,
                    "not joined: {pair:?}"
                );
            }

            let expect = |at: Timestamp| {
                shifts
                    .iter()
                    .find(|sh| sh.start <= at && at < sh.end)
                    .map(|sh| (sh.user, sh.layer))
            };
            let just_before = |t: Timestamp| t - SignedDuration::from_nanos(1);
            let mut instants: Vec<Timestamp> = probes
                .iter()
                .map(|p| from + SignedDuration::from_secs_f64(p * (span_hours * 3600) as f64))
                .collect();
            for sh in &shifts {
                instants.extend([sh.start, just_before(sh.end), sh.end]);
            }
            instants.push(from);
            for at in instants.into_iter().filter(|&at| from <= at && at < until) {
                let found = s.oncall(at);
                prop_assert_eq!(found.map(|sh| (sh.user, sh.layer)), expect(at), "at {}", at);
                if let Some(sh) = found {
                    prop_assert!(sh.start <= at && at < sh.end, "{sh:?} at {at}");
                }
            }

            let zone = s.zone();
            let coverage_start = s.layers.iter().filter_map(|l| resolve(&zone, l.start)).min().unwrap();
            if s.layers.iter().all(|l| l.restriction.is_none()) && from >= coverage_start {
                prop_assert_eq!(s.first_gap(from, until), None);
                prop_assert!(s.oncall(from).is_some());
            }
        }
    }
}
