//! Japanese era dates (和暦), as reports to Japanese authorities expect them.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// The modern Japanese eras.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    Meiji,
    Taisho,
    Showa,
    Heisei,
    Reiwa,
}

/// Japan counted days in the lunisolar calendar until this date, so an
/// earlier Gregorian date has no faithful era rendering.
const GREGORIAN_ADOPTION: Date = Date::constant(1873, 1, 1);

impl Era {
    /// Newest first: a date belongs to the first era that started on or before it.
    const NEWEST_FIRST: [Era; 5] = [Era::Reiwa, Era::Heisei, Era::Showa, Era::Taisho, Era::Meiji];

    /// The era's name, e.g. 令和.
    pub fn kanji(self) -> &'static str {
        match self {
            Era::Meiji => "明治",
            Era::Taisho => "大正",
            Era::Showa => "昭和",
            Era::Heisei => "平成",
            Era::Reiwa => "令和",
        }
    }

    /// The first day of the era, as a Gregorian date.
    pub fn start(self) -> Date {
        match self {
            Era::Meiji => Date::constant(1868, 10, 23),
            Era::Taisho => Date::constant(1912, 7, 30),
            Era::Showa => Date::constant(1926, 12, 25),
            Era::Heisei => Date::constant(1989, 1, 8),
            Era::Reiwa => Date::constant(2019, 5, 1),
        }
    }
}

/// A date counted in era years: 令和7年11月21日.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EraDate {
    pub era: Era,
    /// 1 for the era's first (partial) year, 元年.
    pub year: i16,
    pub month: i8,
    pub day: i8,
}

impl fmt::Display for EraDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.era.kanji())?;
        if self.year == 1 {
            f.write_str("元")?;
        } else {
            write!(f, "{}", self.year)?;
        }
        write!(f, "年{}月{}日", self.month, self.day)
    }
}

/// The era date of a Gregorian date; `None` before 1873-01-01, when Japan
/// still used the lunisolar calendar.
pub fn era_date(date: Date) -> Option<EraDate> {
    if date < GREGORIAN_ADOPTION {
        return None;
    }
    let era = Era::NEWEST_FIRST
        .into_iter()
        .find(|era| era.start() <= date)?;
    Some(EraDate {
        era,
        // Era years turn over on 1 January, so the first year is the
        // partial one in which the era began.
        year: date.year() - era.start().year() + 1,
        month: date.month(),
        day: date.day(),
    })
}

/// The era date of an instant as seen in `zone`: 令和7年11月21日.
pub fn wareki(at: Timestamp, zone: &TimeZone) -> Option<String> {
    era_date(zone.to_datetime(at).date()).map(|date| date.to_string())
}

/// The era date and 24-hour time of an instant as seen in `zone`:
/// 令和7年11月21日 14時05分.
pub fn wareki_datetime(at: Timestamp, zone: &TimeZone) -> Option<String> {
    let local = zone.to_datetime(at);
    let date = era_date(local.date())?;
    Some(format!("{date} {}時{:02}分", local.hour(), local.minute()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::ToSpan;
    use proptest::prelude::*;

    fn on(year: i16, month: i8, day: i8) -> String {
        era_date(Date::constant(year, month, day))
            .expect("a date after 1873")
            .to_string()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn era_boundaries() {
        assert_eq!(on(2019, 4, 30), "平成31年4月30日");
        assert_eq!(on(2019, 5, 1), "令和元年5月1日");
        assert_eq!(on(1989, 1, 7), "昭和64年1月7日");
        assert_eq!(on(1989, 1, 8), "平成元年1月8日");
        assert_eq!(on(1926, 12, 24), "大正15年12月24日");
        assert_eq!(on(1926, 12, 25), "昭和元年12月25日");
        assert_eq!(on(1912, 7, 29), "明治45年7月29日");
        assert_eq!(on(1912, 7, 30), "大正元年7月30日");
        assert_eq!(on(2025, 11, 21), "令和7年11月21日");
    }

    #[test]
    fn lunisolar_dates_have_no_era_date() {
        assert_eq!(era_date(Date::constant(1872, 12, 31)), None);
        assert_eq!(on(1873, 1, 1), "明治6年1月1日");
    }

    #[test]
    fn the_zone_decides_the_day() {
        let at = ts("2019-04-30T15:00:00Z");
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(wareki(at, &tokyo).unwrap(), "令和元年5月1日");
        assert_eq!(wareki(at, &TimeZone::UTC).unwrap(), "平成31年4月30日");
    }

    #[test]
    fn datetime_uses_24_hours_and_padded_minutes() {
        let tokyo = TimeZone::get("Asia/Tokyo").unwrap();
        assert_eq!(
            wareki_datetime(ts("2025-11-21T05:05:00Z"), &tokyo).unwrap(),
            "令和7年11月21日 14時05分"
        );
        assert_eq!(
            wareki_datetime(ts("2019-04-30T15:00:00Z"), &tokyo).unwrap(),
            "令和元年5月1日 0時00分"
        );
        assert_eq!(
            wareki_datetime(ts("1872-12-31T00:00:00Z"), &TimeZone::UTC),
            None
        );
    }

    proptest! {
        #[test]
        // 82,910 days run from 1873-01-01 to 2100-01-01.
        fn gregorian_dates_round_trip(days in 0i32..82_910) {
            let date = GREGORIAN_ADOPTION.checked_add(days.days()).unwrap();
            let in_era = era_date(date).unwrap();
            prop_assert!(in_era.year >= 1);
            prop_assert!(in_era.era.start() <= date);
            prop_assert_eq!(in_era.era.start().year() + in_era.year - 1, date.year());
            prop_assert_eq!((in_era.month, in_era.day), (date.month(), date.day()));
        }
    }
}
