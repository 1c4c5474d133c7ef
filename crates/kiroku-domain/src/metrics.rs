//! Operational metrics over a period (運用メトリクス): how many incidents,
//! how fast they were acknowledged and resolved, how often they struck, and
//! how the count moved over time; with CSV and SVG renderings.
//!
//! Conventions, for every figure in this module:
//!
//! - An incident belongs to a period when its `detected_at` lies in
//!   `[from, to)`. Detection is the one stamp every incident has, and it is
//!   the anchor of the response figures.
//! - Durations are whole seconds as `i64`. A sample is the gap between two
//!   stamps with its sub-second part dropped. A negative gap (a stamp put
//!   before detection, e.g. by clock skew between machines) is clamped to
//!   zero: the incident still counts as acknowledged or resolved, but cannot
//!   pull a mean below zero.
//! - Means and percentiles are rounded to the nearest second, halves up.
//!   Percentiles interpolate linearly between the two nearest ranks
//!   (Hyndman–Fan type 7), so the median of an even number of samples is the
//!   mean of the middle two.
//! - Stamps are taken as the records hold them: an incident detected in the
//!   period and resolved after `to` counts as resolved. The period selects
//!   incidents, not stamps, so a report gets more complete as late
//!   resolutions arrive rather than leaving them out forever.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

use crate::incident::Incident;
use crate::validate::{csv_cell, escape_markup};

/// The few stamps of an incident the metrics need, so that a store can
/// fetch these columns alone for many incidents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentStamp {
    pub category: String,
    pub severity: String,
    pub occurred_at: Option<Timestamp>,
    pub detected_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
}

impl From<&Incident> for IncidentStamp {
    fn from(incident: &Incident) -> Self {
        IncidentStamp {
            category: incident.category.clone(),
            severity: incident.severity.clone(),
            occurred_at: incident.times.occurred_at,
            detected_at: incident.times.detected_at,
            acknowledged_at: incident.times.acknowledged_at,
            resolved_at: incident.times.resolved_at,
        }
    }
}

/// The half-open interval `[from, to)`; empty when `from >= to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Period {
    pub fn contains(&self, at: Timestamp) -> bool {
        self.from <= at && at < self.to
    }
}

/// The calendar unit of a trend's buckets. Weeks start on Monday (ISO 8601).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketSize {
    Day,
    Week,
    Month,
}

impl BucketSize {
    pub fn as_str(self) -> &'static str {
        match self {
            BucketSize::Day => "day",
            BucketSize::Week => "week",
            BucketSize::Month => "month",
        }
    }
}

/// A trend request: buckets of `size`, their boundaries at local midnight
/// in `zone`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendSpec {
    pub size: BucketSize,
    pub zone: TimeZone,
}

/// A trend stops after this many buckets (over ten years of days), so that
/// a huge period cannot make one request build millions of them.
pub const MAX_TREND_BUCKETS: usize = 4000;

/// Summary of one kind of duration sample (time to acknowledge, time to
/// resolve), all in whole seconds; every figure is `None` without samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DurationStats {
    /// How many incidents gave a sample.
    pub sample_count: u64,
    pub mean_seconds: Option<i64>,
    pub median_seconds: Option<i64>,
    pub p90_seconds: Option<i64>,
}

/// One bucket of a trend. The first and last buckets are cut to the period,
/// so `start` and `end` always say exactly which detections were counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrendBucket {
    /// The bucket's calendar start in the trend's zone: `2026-03-02` for a
    /// day or a week (its Monday), `2026-03` for a month.
    pub label: String,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Incidents detected in the bucket.
    pub incident_count: u64,
    /// The mean time to resolve of those incidents that are resolved.
    pub mttr_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trend {
    pub size: BucketSize,
    /// Set when the period needed more than [`MAX_TREND_BUCKETS`] buckets;
    /// the buckets then end before the period does.
    pub truncated: bool,
    pub buckets: Vec<TrendBucket>,
}

/// The operational metrics of one period; see the module documentation for
/// the conventions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metrics {
    pub period: Period,
    /// Incidents detected in the period.
    pub incident_count: u64,
    /// Of those, the ones without `resolved_at`.
    pub open_count: u64,
    /// Passed through from the caller, which owns the action items.
    pub overdue_action_items: u64,
    /// `acknowledged_at − detected_at` of the acknowledged incidents; its
    /// mean is MTTA.
    pub time_to_acknowledge: DurationStats,
    /// `resolved_at − detected_at` of the resolved incidents; its mean is
    /// MTTR (平均復旧時間). It starts at detection, not at `occurred_at`:
    /// the operations design template measures MTTD (検知時間) and MTTR
    /// (復旧時間) as separate figures and counts its security MTTR from
    /// discovery (発見から修正), so the time to detect is not folded in;
    /// `occurred_at` is also optional and often an estimate.
    pub time_to_resolve: DurationStats,
    /// MTBF (平均故障間隔): the mean gap between consecutive starts of the
    /// period's incidents, a start being `occurred_at` or else
    /// `detected_at`; `None` with fewer than two incidents. The gaps of the
    /// sorted starts add up to latest − earliest, so this is
    /// `(latest − earliest) / (n − 1)`.
    pub mtbf_seconds: Option<i64>,
    /// Incident counts by category key, in key order.
    pub by_category: BTreeMap<String, u64>,
    /// Incident counts by severity key, in key order.
    pub by_severity: BTreeMap<String, u64>,
    /// Present when a trend was requested.
    pub trend: Option<Trend>,
}

/// Computes the metrics of the incidents detected in `period`, in one pass
/// over `stamps` plus a sort of each duration sample.
pub fn compute(
    stamps: &[IncidentStamp],
    period: Period,
    overdue_action_items: u64,
    trend: Option<&TrendSpec>,
) -> Metrics {
    let mut buckets = trend.map(|spec| Buckets::new(period, spec));
    let mut incident_count = 0u64;
    let mut open_count = 0u64;
    let mut acknowledge_samples = Vec::new();
    let mut resolve_samples = Vec::new();
    let mut earliest_start: Option<Timestamp> = None;
    let mut latest_start: Option<Timestamp> = None;
    let mut by_category = BTreeMap::new();
    let mut by_severity = BTreeMap::new();

    for stamp in stamps.iter().filter(|s| period.contains(s.detected_at)) {
        incident_count += 1;
        count_key(&mut by_category, &stamp.category);
        count_key(&mut by_severity, &stamp.severity);

        let start = stamp.occurred_at.unwrap_or(stamp.detected_at);
        earliest_start = Some(earliest_start.map_or(start, |e| e.min(start)));
        latest_start = Some(latest_start.map_or(start, |l| l.max(start)));

        if let Some(acknowledged) = stamp.acknowledged_at {
            acknowledge_samples.push(seconds_between(stamp.detected_at, acknowledged));
        }
        let resolve_seconds = stamp
            .resolved_at
            .map(|resolved| seconds_between(stamp.detected_at, resolved));
        match resolve_seconds {
            Some(seconds) => resolve_samples.push(seconds),
            None => open_count += 1,
        }
        if let Some(buckets) = buckets.as_mut() {
            buckets.add(stamp.detected_at, resolve_seconds);
        }
    }

    let mtbf_seconds = match (earliest_start, latest_start) {
        (Some(earliest), Some(latest)) if incident_count >= 2 => Some(rounded_div(
            i128::from(seconds_between(earliest, latest)),
            i128::from(incident_count - 1),
        )),
        _ => None,
    };

    Metrics {
        period,
        incident_count,
        open_count,
        overdue_action_items,
        time_to_acknowledge: DurationStats::from_samples(acknowledge_samples),
        time_to_resolve: DurationStats::from_samples(resolve_samples),
        mtbf_seconds,
        by_category,
        by_severity,
        trend: buckets.map(Buckets::finish),
    }
}

fn count_key(counts: &mut BTreeMap<String, u64>, key: &str) {
    // Looking up by &str first saves an allocation per incident.
    match counts.get_mut(key) {
        Some(count) => *count += 1,
        None => {
            counts.insert(key.to_owned(), 1);
        }
    }
}

/// Whole seconds from `earlier` to `later`, clamped at zero.
fn seconds_between(earlier: Timestamp, later: Timestamp) -> i64 {
    later.duration_since(earlier).as_secs().max(0)
}

/// `numerator / denominator` rounded to the nearest integer, halves up;
/// both must be non-negative and the denominator positive.
fn rounded_div(numerator: i128, denominator: i128) -> i64 {
    let quotient = (2 * numerator + denominator) / (2 * denominator);
    // The quotient lies between the samples it came from, which are i64.
    i64::try_from(quotient).unwrap_or(i64::MAX)
}

impl DurationStats {
    fn from_samples(mut samples: Vec<i64>) -> DurationStats {
        samples.sort_unstable();
        let sum: i128 = samples.iter().map(|&s| i128::from(s)).sum();
        let count = samples.len() as u64;
        DurationStats {
            sample_count: count,
            mean_seconds: (count > 0).then(|| rounded_div(sum, i128::from(count))),
            median_seconds: percentile(&samples, 1, 2),
            p90_seconds: percentile(&samples, 9, 10),
        }
    }
}

/// The `numerator / denominator` quantile of non-negative `sorted` samples,
/// interpolated between the two nearest ranks in exact integer arithmetic.
fn percentile(sorted: &[i64], numerator: usize, denominator: usize) -> Option<i64> {
    let last = sorted.len().checked_sub(1)?;
    let position = last * numerator;
    let lower_rank = position / denominator;
    let remainder = position % denominator;
    let lower = sorted[lower_rank];
    match sorted.get(lower_rank + 1) {
        Some(&upper) if remainder > 0 => {
            let step = rounded_div(
                i128::from(upper - lower) * remainder as i128,
                denominator as i128,
            );
            Some(lower + step)
        }
        _ => Some(lower),
    }
}

/// A trend being filled: its buckets in time order, and the resolve sums
/// behind each bucket's MTTR.
struct Buckets {
    size: BucketSize,
    truncated: bool,
    buckets: Vec<TrendBucket>,
    resolve_sums: Vec<(i128, u64)>,
}

impl Buckets {
    fn new(period: Period, spec: &TrendSpec) -> Buckets {
        let (buckets, truncated) = bucket_bounds(period, spec);
        Buckets {
            size: spec.size,
            truncated,
            resolve_sums: vec![(0, 0); buckets.len()],
            buckets,
        }
    }

    fn add(&mut self, detected_at: Timestamp, resolve_seconds: Option<i64>) {
        // Buckets are contiguous from the period's start, so the one holding
        // `detected_at` is the last that starts at or before it.
        let Some(index) = self
            .buckets
            .partition_point(|b| b.start <= detected_at)
            .checked_sub(1)
        else {
            return;
        };
        let bucket = &mut self.buckets[index];
        if detected_at >= bucket.end {
            return; // past the last bucket of a truncated trend
        }
        bucket.incident_count += 1;
        if let Some(seconds) = resolve_seconds {
            let (sum, count) = &mut self.resolve_sums[index];
            *sum += i128::from(seconds);
            *count += 1;
        }
    }

    fn finish(mut self) -> Trend {
        for (bucket, (sum, count)) in self.buckets.iter_mut().zip(self.resolve_sums) {
            bucket.mttr_seconds = (count > 0).then(|| rounded_div(sum, i128::from(count)));
        }
        Trend {
            size: self.size,
            truncated: self.truncated,
            buckets: self.buckets,
        }
    }
}

/// The empty buckets covering `period`, and whether they were cut short at
/// [`MAX_TREND_BUCKETS`].
fn bucket_bounds(period: Period, spec: &TrendSpec) -> (Vec<TrendBucket>, bool) {
    let mut buckets = Vec::new();
    if period.from >= period.to {
        return (buckets, false);
    }
    let local_date = period.from.to_zoned(spec.zone.clone()).date();
    let mut date = bucket_floor(local_date, spec.size).unwrap_or(local_date);
    let mut start = period.from;
    loop {
        if buckets.len() == MAX_TREND_BUCKETS {
            return (buckets, true);
        }
        // A boundary beyond the calendar's range ends the trend at `to`.
        let next = next_bucket(date, spec.size).ok().and_then(|next_date| {
            let next_start = next_date.to_zoned(spec.zone.clone()).ok()?.timestamp();
            (next_start < period.to).then_some((next_date, next_start))
        });
        let end = next.map_or(period.to, |(_, next_start)| next_start);
        buckets.push(TrendBucket {
            label: bucket_label(date, spec.size),
            start,
            end,
            incident_count: 0,
            mttr_seconds: None,
        });
        match next {
            Some((next_date, next_start)) => {
                date = next_date;
                start = next_start;
            }
            None => return (buckets, false),
        }
    }
}

fn bucket_floor(date: Date, size: BucketSize) -> Result<Date, jiff::Error> {
    match size {
        BucketSize::Day => Ok(date),
        BucketSize::Week => {
            date.checked_sub(i64::from(date.weekday().to_monday_zero_offset()).days())
        }
        BucketSize::Month => Ok(date.first_of_month()),
    }
}

fn next_bucket(date: Date, size: BucketSize) -> Result<Date, jiff::Error> {
    match size {
        BucketSize::Day => date.checked_add(1.day()),
        BucketSize::Week => date.checked_add(1.week()),
        BucketSize::Month => date.checked_add(1.month()),
    }
}

fn bucket_label(date: Date, size: BucketSize) -> String {
    match size {
        BucketSize::Day | BucketSize::Week => date.to_string(),
        BucketSize::Month => format!("{:04}-{:02}", date.year(), date.month()),
    }
}

/// The metrics as RFC 4180 CSV in long format, one figure a row under the
/// header `metric,dimension,key,value`; e.g. `mtta_seconds,,,300`,
/// `count,category,database,4`, `trend_count,month,2026-02,5`. Keeping the
/// key in a column of its own lets a spreadsheet filter by it. A figure
/// that is `None` has an empty value; rows end in CRLF.
pub fn to_csv(metrics: &Metrics) -> String {
    let mut csv = String::new();
    let mut row = |metric: &str, dimension: &str, key: &str, value: &str| {
        let cells = [metric, dimension, key, value].map(csv_cell);
        csv.push_str(&cells.join(","));
        csv.push_str("\r\n");
    };
    let optional = |value: Option<i64>| value.map_or_else(String::new, |v| v.to_string());

    row("metric", "dimension", "key", "value");
    row("period_from", "", "", &metrics.period.from.to_string());
    row("period_to", "", "", &metrics.period.to.to_string());
    row(
        "incident_count",
        "",
        "",
        &metrics.incident_count.to_string(),
    );
    row("open_count", "", "", &metrics.open_count.to_string());
    row(
        "overdue_action_items",
        "",
        "",
        &metrics.overdue_action_items.to_string(),
    );
    for (prefix, mean_name, stats) in [
        ("tta", "mtta_seconds", &metrics.time_to_acknowledge),
        ("ttr", "mttr_seconds", &metrics.time_to_resolve),
    ] {
        row(
            &format!("{prefix}_sample_count"),
            "",
            "",
            &stats.sample_count.to_string(),
        );
        row(mean_name, "", "", &optional(stats.mean_seconds));
        row(
            &format!("{prefix}_median_seconds"),
            "",
            "",
            &optional(stats.median_seconds),
        );
        row(
            &format!("{prefix}_p90_seconds"),
            "",
            "",
            &optional(stats.p90_seconds),
        );
    }
    row("mtbf_seconds", "", "", &optional(metrics.mtbf_seconds));
    for (key, count) in &metrics.by_severity {
        row("count", "severity", key, &count.to_string());
    }
    for (key, count) in &metrics.by_category {
        row("count", "category", key, &count.to_string());
    }
    if let Some(trend) = &metrics.trend {
        let size = trend.size.as_str();
        row("trend_truncated", size, "", &trend.truncated.to_string());
        for bucket in &trend.buckets {
            row(
                "trend_count",
                size,
                &bucket.label,
                &bucket.incident_count.to_string(),
            );
            row(
                "trend_mttr_seconds",
                size,
                &bucket.label,
                &optional(bucket.mttr_seconds),
            );
        }
    }
    csv
}

/// The language of a chart's fixed labels. Category and severity keys are
/// shown as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartLang {
    Ja,
    En,
}

impl ChartLang {
    fn tag(self) -> &'static str {
        match self {
            ChartLang::Ja => "ja",
            ChartLang::En => "en",
        }
    }

    fn pick(self, ja: &'static str, en: &'static str) -> &'static str {
        match self {
            ChartLang::Ja => ja,
            ChartLang::En => en,
        }
    }
}

const SVG_WIDTH: i64 = 720;
const MARGIN: i64 = 16;
/// Where horizontal bars start; their labels end just left of it.
const BAR_LEFT: i64 = 200;
/// Room right of the longest bar for its value.
const BAR_MAX_WIDTH: i64 = SVG_WIDTH - BAR_LEFT - MARGIN - 56;
const ROW_HEIGHT: i64 = 22;
const BAR_HEIGHT: i64 = 14;
const SECTION_GAP: i64 = 16;
const TREND_AXIS_LEFT: i64 = MARGIN + 40;
const TREND_PLOT_HEIGHT: i64 = 160;
/// Room an x-axis label needs, to thin them out when buckets are many.
const TREND_LABEL_WIDTH: f64 = 80.0;
/// Longer keys are cut, so that they stay left of the bars; a character
/// outside ASCII counts twice, as CJK text is about twice as wide.
const LABEL_MAX_WIDTH: usize = 28;
const BAR_COLOR: &str = "#4f7cac";
const TEXT_COLOR: &str = "#222222";
const AXIS_COLOR: &str = "#888888";

/// A self-contained SVG chart of the metrics: the headline figures, bars of
/// the incidents by severity and by category, and columns of the trend's
/// counts when there is a trend. It holds no script, style sheet or
/// external reference; all text is escaped, and the same metrics always
/// give the same bytes.
pub fn to_svg(metrics: &Metrics, lang: ChartLang) -> String {
    let title = lang.pick("インシデント指標", "Incident metrics");
    let mut body = String::new();
    let mut y = MARGIN + 20;
    push_text(&mut body, MARGIN, y, "start", "18", true, title);
    y += 22;
    let period = format!(
        "{}: {} – {}",
        lang.pick("期間", "Period"),
        metrics.period.from,
        metrics.period.to
    );
    push_text(&mut body, MARGIN, y, "start", "12", false, &period);
    y += 20;
    let counts = format!(
        "{}: {} · {}: {} · {}: {}",
        lang.pick("件数", "Incidents"),
        metrics.incident_count,
        lang.pick("未解決", "Open"),
        metrics.open_count,
        lang.pick("期限超過のアクションアイテム", "Overdue action items"),
        metrics.overdue_action_items
    );
    push_text(&mut body, MARGIN, y, "start", "12", false, &counts);
    y += 20;
    let durations = format!(
        "MTTA: {} · MTTR: {} · MTBF: {}",
        human_duration(metrics.time_to_acknowledge.mean_seconds, lang),
        human_duration(metrics.time_to_resolve.mean_seconds, lang),
        human_duration(metrics.mtbf_seconds, lang)
    );
    push_text(&mut body, MARGIN, y, "start", "12", false, &durations);
    y += SECTION_GAP;

    y = push_bar_section(
        &mut body,
        y,
        lang.pick("重大度別件数", "Incidents by severity"),
        &metrics.by_severity,
        lang,
    );
    y = push_bar_section(
        &mut body,
        y,
        lang.pick("カテゴリ別件数", "Incidents by category"),
        &metrics.by_category,
        lang,
    );
    if let Some(trend) = metrics.trend.as_ref().filter(|t| !t.buckets.is_empty()) {
        y = push_trend_section(&mut body, y, trend, lang);
    }
    let height = y + MARGIN;

    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{SVG_WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {SVG_WIDTH} {height}\" font-family=\"sans-serif\" fill=\"{TEXT_COLOR}\" \
         xml:lang=\"{}\" role=\"img\">\n<title>{}</title>\n\
         <rect width=\"{SVG_WIDTH}\" height=\"{height}\" fill=\"#ffffff\"/>\n{body}</svg>\n",
        lang.tag(),
        escape_markup(title),
    )
}

/// A section of horizontal bars, one per key; returns the y below it.
fn push_bar_section(
    body: &mut String,
    mut y: i64,
    title: &str,
    counts: &BTreeMap<String, u64>,
    lang: ChartLang,
) -> i64 {
    y += 20;
    push_text(body, MARGIN, y, "start", "14", true, title);
    y += 8;
    if counts.is_empty() {
        push_text(
            body,
            BAR_LEFT,
            y + 15,
            "start",
            "12",
            false,
            lang.pick("データなし", "No data"),
        );
        return y + ROW_HEIGHT + SECTION_GAP;
    }
    let largest = counts.values().copied().max().unwrap_or(0).max(1);
    for (key, &count) in counts {
        let width = scaled(count, largest, BAR_MAX_WIDTH);
        push_text(
            body,
            BAR_LEFT - 8,
            y + 15,
            "end",
            "12",
            false,
            &shortened(key),
        );
        let _ = writeln!(
            body,
            "<rect x=\"{BAR_LEFT}\" y=\"{}\" width=\"{width}\" height=\"{BAR_HEIGHT}\" fill=\"{BAR_COLOR}\"/>",
            y + 4
        );
        push_text(
            body,
            BAR_LEFT + width + 6,
            y + 15,
            "start",
            "12",
            false,
            &count.to_string(),
        );
        y += ROW_HEIGHT;
    }
    y + SECTION_GAP
}

/// The trend as columns over a count axis; returns the y below it.
fn push_trend_section(body: &mut String, mut y: i64, trend: &Trend, lang: ChartLang) -> i64 {
    let title = match trend.size {
        BucketSize::Day => lang.pick("日別件数", "Incidents per day"),
        BucketSize::Week => lang.pick("週別件数", "Incidents per week"),
        BucketSize::Month => lang.pick("月別件数", "Incidents per month"),
    };
    y += 20;
    push_text(body, MARGIN, y, "start", "14", true, title);
    if trend.truncated {
        let note = lang.pick("（先頭部分のみ表示）", " (first part only)");
        push_text(body, SVG_WIDTH - MARGIN, y, "end", "11", false, note);
    }
    y += 20;
    push_text(
        body,
        TREND_AXIS_LEFT - 6,
        y,
        "end",
        "11",
        false,
        lang.pick("件数", "Count"),
    );
    let top = y + 8;
    let bottom = top + TREND_PLOT_HEIGHT;
    let right = SVG_WIDTH - MARGIN;
    let largest = trend
        .buckets
        .iter()
        .map(|b| b.incident_count)
        .max()
        .unwrap_or(0);
    push_text(
        body,
        TREND_AXIS_LEFT - 6,
        top + 4,
        "end",
        "11",
        false,
        &largest.to_string(),
    );
    push_text(body, TREND_AXIS_LEFT - 6, bottom, "end", "11", false, "0");
    let _ = writeln!(
        body,
        "<path d=\"M{TREND_AXIS_LEFT} {top}V{bottom}H{right}\" fill=\"none\" stroke=\"{AXIS_COLOR}\"/>"
    );

    let slot = (right - TREND_AXIS_LEFT) as f64 / trend.buckets.len() as f64;
    let labels_every = (TREND_LABEL_WIDTH / slot).ceil().max(1.0) as usize;
    for (index, bucket) in trend.buckets.iter().enumerate() {
        let height = scaled(bucket.incident_count, largest.max(1), TREND_PLOT_HEIGHT);
        let left = TREND_AXIS_LEFT as f64 + slot * index as f64;
        let center = left + slot / 2.0;
        if height > 0 {
            let _ = writeln!(
                body,
                "<rect x=\"{:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{height}\" fill=\"{BAR_COLOR}\"/>",
                left + slot * 0.1,
                bottom - height,
                slot * 0.8
            );
        }
        // Values fit above the columns only while the columns are wide.
        if slot >= 20.0 {
            push_text_at(
                body,
                center,
                bottom - height - 3,
                "middle",
                "11",
                &bucket.incident_count.to_string(),
            );
        }
        if index % labels_every == 0 {
            push_text_at(body, center, bottom + 14, "middle", "11", &bucket.label);
        }
    }
    bottom + 14 + SECTION_GAP
}

/// `value` of `largest` as a length of at most `full`; a non-zero value
/// stays visible.
fn scaled(value: u64, largest: u64, full: i64) -> i64 {
    let length = rounded_div(
        i128::from(value) * i128::from(full),
        i128::from(largest.max(1)),
    );
    if value > 0 { length.max(1) } else { 0 }
}

fn shortened(label: &str) -> String {
    let width = |c: char| if c.is_ascii() { 1 } else { 2 };
    if label.chars().map(width).sum::<usize>() <= LABEL_MAX_WIDTH {
        return label.to_owned();
    }
    let mut cut = String::new();
    let mut used = 0;
    for c in label.chars() {
        // Leaves room for the ellipsis, which counts as one.
        if used + width(c) > LABEL_MAX_WIDTH - 1 {
            break;
        }
        used += width(c);
        cut.push(c);
    }
    cut.push('…');
    cut
}

fn push_text(
    body: &mut String,
    x: i64,
    y: i64,
    anchor: &str,
    size: &str,
    bold: bool,
    content: &str,
) {
    let weight = if bold { " font-weight=\"bold\"" } else { "" };
    let _ = writeln!(
        body,
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"{anchor}\" font-size=\"{size}\"{weight}>{}</text>",
        escape_markup(content)
    );
}

fn push_text_at(body: &mut String, x: f64, y: i64, anchor: &str, size: &str, content: &str) {
    let _ = writeln!(
        body,
        "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"{anchor}\" font-size=\"{size}\">{}</text>",
        escape_markup(content)
    );
}

/// A duration for people: minutes under an hour, hours under two days,
/// days beyond; `—` when there is none.
fn human_duration(seconds: Option<i64>, lang: ChartLang) -> String {
    let Some(seconds) = seconds else {
        return "—".to_owned();
    };
    let seconds = seconds as f64;
    if seconds < 3600.0 {
        format!("{:.1}{}", seconds / 60.0, lang.pick("分", " min"))
    } else if seconds < 172_800.0 {
        format!("{:.1}{}", seconds / 3600.0, lang.pick("時間", " h"))
    } else {
        format!("{:.1}{}", seconds / 86_400.0, lang.pick("日", " d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn period(from: &str, to: &str) -> Period {
        Period {
            from: ts(from),
            to: ts(to),
        }
    }

    fn tokyo() -> TimeZone {
        TimeZone::get("Asia/Tokyo").unwrap()
    }

    fn trend_in(size: BucketSize, zone: TimeZone) -> TrendSpec {
        TrendSpec { size, zone }
    }

    /// An incident detected at `detected`, acknowledged and resolved the
    /// given numbers of seconds later.
    fn stamp(
        category: &str,
        severity: &str,
        detected: &str,
        acknowledged_after: Option<i64>,
        resolved_after: Option<i64>,
    ) -> IncidentStamp {
        let detected_at = ts(detected);
        let later = |secs: i64| detected_at + SignedDuration::from_secs(secs);
        IncidentStamp {
            category: category.into(),
            severity: severity.into(),
            occurred_at: None,
            detected_at,
            acknowledged_at: acknowledged_after.map(later),
            resolved_at: resolved_after.map(later),
        }
    }

    /// Five incidents in February 2026 and two just outside it.
    fn february() -> Vec<IncidentStamp> {
        let mut occurred_earlier = stamp(
            "server_failure",
            "P1",
            "2026-02-04T00:00:00Z",
            Some(30),
            Some(1800),
        );
        occurred_earlier.occurred_at = Some(ts("2026-02-03T12:00:00Z"));
        vec![
            stamp(
                "database",
                "P1",
                "2026-02-01T00:00:00Z",
                Some(60),
                Some(3600),
            ),
            stamp(
                "database",
                "P2",
                "2026-02-02T00:00:00Z",
                Some(120),
                Some(7200),
            ),
            stamp(
                "service_outage",
                "P1",
                "2026-02-03T00:00:00Z",
                Some(300),
                None,
            ),
            stamp("service_outage", "P3", "2026-02-05T00:00:00Z", None, None),
            occurred_earlier,
            stamp("database", "P0", "2026-01-31T23:59:59Z", Some(1), Some(1)),
            stamp("database", "P0", "2026-03-01T00:00:00Z", Some(1), Some(1)),
        ]
    }

    fn february_period() -> Period {
        period("2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    }

    #[test]
    fn empty_input_gives_zero_counts_and_no_figures() {
        let m = compute(&[], february_period(), 0, None);
        assert_eq!(m.incident_count, 0);
        assert_eq!(m.open_count, 0);
        let none = DurationStats {
            sample_count: 0,
            mean_seconds: None,
            median_seconds: None,
            p90_seconds: None,
        };
        assert_eq!(m.time_to_acknowledge, none);
        assert_eq!(m.time_to_resolve, none);
        assert_eq!(m.mtbf_seconds, None);
        assert!(m.by_category.is_empty() && m.by_severity.is_empty());
        assert_eq!(m.trend, None);
    }

    #[test]
    fn a_single_incident_has_no_mtbf() {
        let one = [stamp(
            "database",
            "P1",
            "2026-02-10T00:00:00Z",
            Some(60),
            Some(600),
        )];
        let m = compute(&one, february_period(), 0, None);
        assert_eq!(m.incident_count, 1);
        assert_eq!(m.mtbf_seconds, None);
        assert_eq!(m.time_to_acknowledge.mean_seconds, Some(60));
        assert_eq!(m.time_to_acknowledge.median_seconds, Some(60));
        assert_eq!(m.time_to_acknowledge.p90_seconds, Some(60));
        assert_eq!(m.time_to_resolve.mean_seconds, Some(600));
        assert_eq!(m.open_count, 0);
    }

    #[test]
    fn hand_computed_figures() {
        let m = compute(&february(), february_period(), 7, None);
        // The two incidents at either edge of the period are left out.
        assert_eq!(m.incident_count, 5);
        assert_eq!(m.open_count, 2);
        assert_eq!(m.overdue_action_items, 7);
        // Acknowledged: 30, 60, 120, 300; the unacknowledged one is no sample.
        // Mean 510 / 4 = 127.5 → 128. Median between ranks 1 and 2: 90.
        // p90 at rank 2.7: 120 + 0.7 × 180 = 246.
        assert_eq!(
            m.time_to_acknowledge,
            DurationStats {
                sample_count: 4,
                mean_seconds: Some(128),
                median_seconds: Some(90),
                p90_seconds: Some(246),
            }
        );
        // Resolved: 1800, 3600, 7200; the two open ones are no samples.
        // Mean 4200, median 3600, p90 at rank 1.8: 3600 + 0.8 × 3600 = 6480.
        assert_eq!(
            m.time_to_resolve,
            DurationStats {
                sample_count: 3,
                mean_seconds: Some(4200),
                median_seconds: Some(3600),
                p90_seconds: Some(6480),
            }
        );
        // Starts: Feb 1, 2, 3, 3 12:00 (occurred, not detected), 5; gaps of
        // 1, 1, 0.5 and 1.5 days average one day.
        assert_eq!(m.mtbf_seconds, Some(86_400));
        assert_eq!(
            m.by_category.into_iter().collect::<Vec<_>>(),
            [
                ("database".to_string(), 2),
                ("server_failure".to_string(), 1),
                ("service_outage".to_string(), 2),
            ]
        );
        assert_eq!(
            m.by_severity.into_iter().collect::<Vec<_>>(),
            [
                ("P1".to_string(), 3),
                ("P2".to_string(), 1),
                ("P3".to_string(), 1),
            ]
        );
    }

    #[test]
    fn stamps_before_detection_clamp_to_zero() {
        let stamps = [
            stamp(
                "database",
                "P1",
                "2026-02-10T00:00:00Z",
                Some(-120),
                Some(-60),
            ),
            stamp(
                "database",
                "P1",
                "2026-02-11T00:00:00Z",
                Some(100),
                Some(300),
            ),
        ];
        let m = compute(&stamps, february_period(), 0, None);
        assert_eq!(m.time_to_acknowledge.sample_count, 2);
        assert_eq!(m.time_to_acknowledge.mean_seconds, Some(50));
        assert_eq!(m.time_to_acknowledge.median_seconds, Some(50));
        assert_eq!(m.time_to_resolve.mean_seconds, Some(150));
        assert_eq!(m.open_count, 0);
    }

    #[test]
    fn stamps_come_from_an_incident() {
        use crate::category::Catalog;
        use crate::incident::{IncidentDraft, Rules};
        use crate::lifecycle::Transition;
        use crate::severity::{BusinessHours, SeverityScheme};

        let rules = Rules {
            catalog: Catalog::default(),
            severities: SeverityScheme::preset("p0-p3").unwrap(),
            business_hours: BusinessHours::weekdays(tokyo()),
        };
        let detected = ts("2026-02-10T00:00:00Z");
        let draft = IncidentDraft {
            title: "DB down".into(),
            category: "database".into(),
            severity: "P0".into(),
            occurred_at: Some(ts("2026-02-09T23:50:00Z")),
            detected_at: Some(detected),
            ..IncidentDraft::default()
        };
        let mut incident = draft.declare(&rules, uuid::Uuid::nil(), "DB-2026-001".into(), detected);
        incident
            .transition(Transition::Acknowledge, ts("2026-02-10T00:05:00Z"))
            .unwrap();
        incident
            .transition(Transition::Resolve, ts("2026-02-10T01:00:00Z"))
            .unwrap();
        assert_eq!(
            IncidentStamp::from(&incident),
            IncidentStamp {
                category: "database".into(),
                severity: "P0".into(),
                occurred_at: Some(ts("2026-02-09T23:50:00Z")),
                detected_at: detected,
                acknowledged_at: Some(ts("2026-02-10T00:05:00Z")),
                resolved_at: Some(ts("2026-02-10T01:00:00Z")),
            }
        );
    }

    fn bucket_summary(m: &Metrics) -> Vec<(String, Timestamp, Timestamp, u64, Option<i64>)> {
        m.trend
            .as_ref()
            .unwrap()
            .buckets
            .iter()
            .map(|b| {
                (
                    b.label.clone(),
                    b.start,
                    b.end,
                    b.incident_count,
                    b.mttr_seconds,
                )
            })
            .collect()
    }

    #[test]
    fn day_buckets_turn_at_midnight_of_their_zone() {
        // 1–3 March in Tokyo (UTC+9).
        let march = period("2026-02-28T15:00:00Z", "2026-03-03T15:00:00Z");
        let stamps = [
            stamp("database", "P1", "2026-02-28T15:00:00Z", None, Some(600)),
            stamp("database", "P1", "2026-03-01T14:59:59Z", None, Some(1200)),
            stamp("database", "P1", "2026-03-01T15:00:00Z", None, None),
            stamp("database", "P1", "2026-03-03T14:59:59Z", None, Some(60)),
        ];
        let in_tokyo = compute(&stamps, march, 0, Some(&trend_in(BucketSize::Day, tokyo())));
        assert_eq!(
            bucket_summary(&in_tokyo),
            [
                (
                    "2026-03-01".to_string(),
                    ts("2026-02-28T15:00:00Z"),
                    ts("2026-03-01T15:00:00Z"),
                    2,
                    Some(900)
                ),
                (
                    "2026-03-02".to_string(),
                    ts("2026-03-01T15:00:00Z"),
                    ts("2026-03-02T15:00:00Z"),
                    1,
                    None
                ),
                (
                    "2026-03-03".to_string(),
                    ts("2026-03-02T15:00:00Z"),
                    ts("2026-03-03T15:00:00Z"),
                    1,
                    Some(60)
                ),
            ]
        );

        // The same instants by UTC days: the first and last days are cut
        // to the period.
        let in_utc = compute(
            &stamps,
            march,
            0,
            Some(&trend_in(BucketSize::Day, TimeZone::UTC)),
        );
        assert_eq!(
            bucket_summary(&in_utc),
            [
                (
                    "2026-02-28".to_string(),
                    ts("2026-02-28T15:00:00Z"),
                    ts("2026-03-01T00:00:00Z"),
                    1,
                    Some(600)
                ),
                (
                    "2026-03-01".to_string(),
                    ts("2026-03-01T00:00:00Z"),
                    ts("2026-03-02T00:00:00Z"),
                    2,
                    Some(1200)
                ),
                (
                    "2026-03-02".to_string(),
                    ts("2026-03-02T00:00:00Z"),
                    ts("2026-03-03T00:00:00Z"),
                    0,
                    None
                ),
                (
                    "2026-03-03".to_string(),
                    ts("2026-03-03T00:00:00Z"),
                    ts("2026-03-03T15:00:00Z"),
                    1,
                    Some(60)
                ),
            ]
        );
    }

    #[test]
    fn month_buckets_span_a_leap_february() {
        let stamps = [
            stamp("database", "P1", "2024-02-29T14:59:59Z", None, None),
            stamp("database", "P1", "2024-02-29T15:00:00Z", None, None),
            stamp("database", "P1", "2024-02-29T23:59:59Z", None, None),
            stamp("database", "P1", "2024-03-01T00:00:00Z", None, None),
        ];
        let utc = compute(
            &stamps,
            period("2024-01-01T00:00:00Z", "2024-04-01T00:00:00Z"),
            0,
            Some(&trend_in(BucketSize::Month, TimeZone::UTC)),
        );
        assert_eq!(
            bucket_summary(&utc),
            [
                (
                    "2024-01".to_string(),
                    ts("2024-01-01T00:00:00Z"),
                    ts("2024-02-01T00:00:00Z"),
                    0,
                    None
                ),
                (
                    "2024-02".to_string(),
                    ts("2024-02-01T00:00:00Z"),
                    ts("2024-03-01T00:00:00Z"),
                    3,
                    None
                ),
                (
                    "2024-03".to_string(),
                    ts("2024-03-01T00:00:00Z"),
                    ts("2024-04-01T00:00:00Z"),
                    1,
                    None
                ),
            ]
        );
        let february = &utc.trend.as_ref().unwrap().buckets[1];
        assert_eq!(
            february.end.duration_since(february.start),
            SignedDuration::from_hours(29 * 24)
        );

        // In Tokyo, 15:00 UTC on the 29th is already 1 March.
        let in_tokyo = compute(
            &stamps,
            period("2023-12-31T15:00:00Z", "2024-03-31T15:00:00Z"),
            0,
            Some(&trend_in(BucketSize::Month, tokyo())),
        );
        let counts: Vec<_> = bucket_summary(&in_tokyo)
            .into_iter()
            .map(|(label, start, _, count, _)| (label, start, count))
            .collect();
        assert_eq!(
            counts,
            [
                ("2024-01".to_string(), ts("2023-12-31T15:00:00Z"), 0),
                ("2024-02".to_string(), ts("2024-01-31T15:00:00Z"), 1),
                ("2024-03".to_string(), ts("2024-02-29T15:00:00Z"), 3),
            ]
        );
    }

    #[test]
    fn week_buckets_start_on_monday() {
        // Wednesday 4 March 2026 to Friday 20 March.
        let stamps = [
            stamp("database", "P1", "2026-03-08T23:59:59Z", None, None),
            stamp("database", "P1", "2026-03-09T00:00:00Z", None, None),
        ];
        let m = compute(
            &stamps,
            period("2026-03-04T00:00:00Z", "2026-03-20T00:00:00Z"),
            0,
            Some(&trend_in(BucketSize::Week, TimeZone::UTC)),
        );
        let weeks: Vec<_> = bucket_summary(&m)
            .into_iter()
            .map(|(label, start, end, count, _)| (label, start, end, count))
            .collect();
        assert_eq!(
            weeks,
            [
                (
                    "2026-03-02".to_string(),
                    ts("2026-03-04T00:00:00Z"),
                    ts("2026-03-09T00:00:00Z"),
                    1
                ),
                (
                    "2026-03-09".to_string(),
                    ts("2026-03-09T00:00:00Z"),
                    ts("2026-03-16T00:00:00Z"),
                    1
                ),
                (
                    "2026-03-16".to_string(),
                    ts("2026-03-16T00:00:00Z"),
                    ts("2026-03-20T00:00:00Z"),
                    0
                ),
            ]
        );
    }

    #[test]
    fn an_empty_period_has_no_buckets() {
        let instant = "2026-02-01T00:00:00Z";
        let m = compute(
            &february(),
            period(instant, instant),
            0,
            Some(&trend_in(BucketSize::Day, TimeZone::UTC)),
        );
        assert_eq!(m.incident_count, 0);
        let trend = m.trend.unwrap();
        assert!(trend.buckets.is_empty() && !trend.truncated);
    }

    #[test]
    fn a_huge_period_truncates_the_trend() {
        let stamps = [
            stamp("database", "P1", "2000-01-01T00:00:00Z", None, None),
            stamp("database", "P1", "2019-06-01T00:00:00Z", None, None),
        ];
        let m = compute(
            &stamps,
            period("2000-01-01T00:00:00Z", "2020-01-01T00:00:00Z"),
            0,
            Some(&trend_in(BucketSize::Day, TimeZone::UTC)),
        );
        assert_eq!(m.incident_count, 2);
        let trend = m.trend.unwrap();
        assert!(trend.truncated);
        assert_eq!(trend.buckets.len(), MAX_TREND_BUCKETS);
        let counted: u64 = trend.buckets.iter().map(|b| b.incident_count).sum();
        assert_eq!(counted, 1);
    }

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(csv_cell("database"), "database");
        assert_eq!(csv_cell(""), "");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("+81"), "'+81");
        assert_eq!(csv_cell("-1"), "'-1");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tcmd"), "'\tcmd");
        assert_eq!(csv_cell("\rcmd"), "\"'\rcmd\"");
        assert_eq!(csv_cell("=A1,B1"), "\"'=A1,B1\"");
        assert_eq!(csv_cell("a=b"), "a=b");
    }

    #[test]
    fn csv_guards_hostile_keys_and_ends_rows_in_crlf() {
        let stamps = [
            stamp(
                "=HYPERLINK(\"http://x\",\"y\")",
                "@P1",
                "2026-02-10T00:00:00Z",
                None,
                None,
            ),
            stamp("a,b", "-P2", "2026-02-11T00:00:00Z", None, None),
        ];
        let csv = to_csv(&compute(&stamps, february_period(), 0, None));
        assert!(csv.starts_with("metric,dimension,key,value\r\n"));
        assert!(csv.ends_with("\r\n"));
        assert_eq!(csv.matches('\n').count(), csv.matches("\r\n").count());
        assert!(
            csv.contains("\r\ncount,category,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",1\r\n")
        );
        assert!(csv.contains("\r\ncount,category,\"a,b\",1\r\n"));
        assert!(csv.contains("\r\ncount,severity,'@P1,1\r\n"));
        assert!(csv.contains("\r\ncount,severity,'-P2,1\r\n"));
        assert!(csv.contains("\r\nmtta_seconds,,,\r\n"));
    }

    fn snapshot_metrics() -> Metrics {
        compute(
            &february(),
            february_period(),
            3,
            Some(&trend_in(BucketSize::Week, tokyo())),
        )
    }

    #[test]
    fn csv_snapshot() {
        // Line ends are pinned by the test above; the snapshot shows LF so
        // that it reads the same on every checkout.
        insta::assert_snapshot!(to_csv(&snapshot_metrics()).replace("\r\n", "\n"));
    }

    #[test]
    fn svg_snapshots() {
        insta::assert_snapshot!("svg_en", to_svg(&snapshot_metrics(), ChartLang::En));
        insta::assert_snapshot!("svg_ja", to_svg(&snapshot_metrics(), ChartLang::Ja));
    }

    #[test]
    fn svg_escapes_hostile_keys_and_stays_self_contained() {
        let stamps = [
            stamp(
                "<script>alert(1)</script>",
                "\"&'",
                "2026-02-10T00:00:00Z",
                None,
                None,
            ),
            stamp(
                "x\" onload=\"alert(1)",
                "P1",
                "2026-02-11T00:00:00Z",
                None,
                None,
            ),
        ];
        let m = compute(
            &stamps,
            february_period(),
            0,
            Some(&trend_in(BucketSize::Month, TimeZone::UTC)),
        );
        let svg = to_svg(&m, ChartLang::En);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\""));
        assert!(svg.contains("viewBox=\"0 0 720 "));
        assert!(svg.contains(">&lt;script&gt;alert(1)&lt;/script&gt;</text>"));
        assert!(svg.contains(">&quot;&amp;&#39;</text>"));
        assert!(svg.contains(">x&quot; onload=&quot;alert(1)</text>"));
        for forbidden in ["<script", "onload=\"", "href", "url(", "<style", "<image"] {
            assert!(!svg.contains(forbidden), "{forbidden}");
        }
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert_eq!(svg, to_svg(&m, ChartLang::En));
    }

    #[test]
    fn svg_of_nothing_says_so() {
        let svg = to_svg(&compute(&[], february_period(), 0, None), ChartLang::Ja);
        assert_eq!(svg.matches(">データなし</text>").count(), 2);
        assert!(svg.contains("MTTA: — · MTTR: — · MTBF: —"));
    }

    #[test]
    fn long_labels_are_cut() {
        let ascii = "a".repeat(40);
        assert_eq!(shortened(&ascii), format!("{}…", "a".repeat(27)));
        assert_eq!(shortened(&"a".repeat(28)), "a".repeat(28));
        assert_eq!(shortened("データベース障害"), "データベース障害");
        let wide = "障".repeat(20);
        assert_eq!(shortened(&wide), format!("{}…", "障".repeat(13)));
    }

    #[test]
    fn durations_read_in_a_fitting_unit() {
        assert_eq!(human_duration(Some(90), ChartLang::En), "1.5 min");
        assert_eq!(human_duration(Some(5400), ChartLang::Ja), "1.5時間");
        assert_eq!(human_duration(Some(259_200), ChartLang::En), "3.0 d");
        assert_eq!(human_duration(None, ChartLang::En), "—");
    }

    const BASE_SECOND: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn at(offset: i64) -> Timestamp {
        Timestamp::from_second(BASE_SECOND + offset).unwrap()
    }

    fn any_stamp() -> impl Strategy<Value = IncidentStamp> {
        (
            0usize..3,
            0usize..3,
            0i64..40 * 86_400,
            proptest::option::of(0i64..86_400),
            proptest::option::of(-600i64..100_000),
            proptest::option::of(-600i64..1_000_000),
        )
            .prop_map(|(category, severity, detected, lead, ack, resolve)| {
                let detected_at = at(detected);
                let later = |secs: i64| detected_at + SignedDuration::from_secs(secs);
                IncidentStamp {
                    category: ["database", "network", "=evil"][category].into(),
                    severity: ["P1", "P2", "P3"][severity].into(),
                    occurred_at: lead.map(|l| detected_at - SignedDuration::from_secs(l)),
                    detected_at,
                    acknowledged_at: ack.map(later),
                    resolved_at: resolve.map(later),
                }
            })
    }

    fn assert_within_samples(stats: &DurationStats, samples: &[i64]) {
        assert_eq!(stats.sample_count, samples.len() as u64);
        match (samples.iter().min(), samples.iter().max()) {
            (Some(&min), Some(&max)) => {
                for figure in [stats.mean_seconds, stats.median_seconds, stats.p90_seconds] {
                    let figure = figure.unwrap();
                    assert!(min <= figure && figure <= max, "{min} <= {figure} <= {max}");
                }
                assert!(stats.median_seconds <= stats.p90_seconds);
            }
            _ => {
                assert_eq!(stats.mean_seconds, None);
                assert_eq!(stats.median_seconds, None);
                assert_eq!(stats.p90_seconds, None);
            }
        }
    }

    proptest! {
        /// Means and percentiles lie within their samples, and every way of
        /// counting the period's incidents adds up to the total.
        #[test]
        fn figures_stay_within_samples_and_counts_add_up(
            stamps in proptest::collection::vec(any_stamp(), 0..60)
        ) {
            let period = Period { from: at(5 * 86_400), to: at(35 * 86_400) };
            let spec = trend_in(BucketSize::Day, tokyo());
            let m = compute(&stamps, period, 0, Some(&spec));
            let inside: Vec<_> = stamps.iter().filter(|s| period.contains(s.detected_at)).collect();
            let total = inside.len() as u64;
            prop_assert_eq!(m.incident_count, total);
            prop_assert_eq!(m.by_category.values().sum::<u64>(), total);
            prop_assert_eq!(m.by_severity.values().sum::<u64>(), total);
            let trend = m.trend.as_ref().unwrap();
            prop_assert_eq!(trend.buckets.iter().map(|b| b.incident_count).sum::<u64>(), total);
            prop_assert_eq!(m.open_count + m.time_to_resolve.sample_count, total);

            let clamped = |to: Option<Timestamp>, from: Timestamp| {
                to.map(|t| t.duration_since(from).as_secs().max(0))
            };
            let acknowledge: Vec<i64> =
                inside.iter().filter_map(|s| clamped(s.acknowledged_at, s.detected_at)).collect();
            let resolve: Vec<i64> =
                inside.iter().filter_map(|s| clamped(s.resolved_at, s.detected_at)).collect();
            assert_within_samples(&m.time_to_acknowledge, &acknowledge);
            assert_within_samples(&m.time_to_resolve, &resolve);

            let mut starts: Vec<i64> = inside
                .iter()
                .map(|s| s.occurred_at.unwrap_or(s.detected_at).as_second())
                .collect();
            starts.sort_unstable();
            let gaps: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
            match (gaps.iter().min(), gaps.iter().max(), m.mtbf_seconds) {
                (Some(&min), Some(&max), Some(mtbf)) => prop_assert!(min <= mtbf && mtbf <= max),
                (None, None, None) => {}
                other => prop_assert!(false, "gaps and MTBF disagree: {other:?}"),
            }
        }
    }

    /// Run with `cargo test --release -p kiroku-domain metrics -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; meaningful in release builds only"]
    fn computes_100k_incidents_quickly() {
        let categories = [
            "information_leak",
            "server_failure",
            "data_loss",
            "unauthorized_access",
            "service_outage",
            "database",
        ];
        let severities = ["P0", "P1", "P2", "P3"];
        let stamps: Vec<IncidentStamp> = (0..100_000i64)
            .map(|i| {
                let detected_at = at(i * 311 % (365 * 86_400));
                let later = |secs: i64| detected_at + SignedDuration::from_secs(secs);
                IncidentStamp {
                    category: categories[(i % 6) as usize].into(),
                    severity: severities[(i % 4) as usize].into(),
                    occurred_at: (i % 3 == 0).then(|| detected_at - SignedDuration::from_mins(7)),
                    detected_at,
                    acknowledged_at: (i % 10 != 0).then(|| later(i * 37 % 3600)),
                    resolved_at: (i % 7 != 0).then(|| later(i * 7919 % 604_800)),
                }
            })
            .collect();
        let year = Period {
            from: at(0),
            to: at(365 * 86_400),
        };
        let spec = trend_in(BucketSize::Day, tokyo());
        let started = std::time::Instant::now();
        let m = compute(&stamps, year, 0, Some(&spec));
        let elapsed = started.elapsed();
        println!("compute over {} incidents: {elapsed:?}", m.incident_count);
        assert_eq!(m.incident_count, 100_000);
        if !cfg!(debug_assertions) {
            assert!(
                elapsed < std::time::Duration::from_millis(100),
                "{elapsed:?}"
            );
        }
    }
}
