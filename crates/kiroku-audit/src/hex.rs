//! Lower-case hex, the form every hash, key and signature travels in.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Each byte's value as a hex digit, or `INVALID`: a table, because
/// verification decodes a hash per event.
const INVALID: u8 = 0xff;
const VALUES: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 16 {
        t[DIGITS[i] as usize] = i as u8;
        t[DIGITS[i].to_ascii_uppercase() as usize] = i as u8;
        i += 1;
    }
    t
};

fn decode_into(s: &[u8], out: &mut [u8]) -> Option<()> {
    for (pair, byte) in s.chunks_exact(2).zip(out.iter_mut()) {
        let (hi, lo) = (VALUES[usize::from(pair[0])], VALUES[usize::from(pair[1])]);
        if hi == INVALID || lo == INVALID {
            return None;
        }
        *byte = hi << 4 | lo;
    }
    Some(())
}

pub fn decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = vec![0; s.len() / 2];
    decode_into(s.as_bytes(), &mut out)?;
    Some(out)
}

/// Exactly `N` bytes, or None.
pub fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    decode_into(s.as_bytes(), &mut out)?;
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_rejects() {
        assert_eq!(super::encode(&[0, 15, 255]), "000fff");
        assert_eq!(super::decode("000fff"), Some(vec![0, 15, 255]));
        assert_eq!(super::decode("0"), None);
        assert_eq!(super::decode("zz"), None);
        assert_eq!(super::decode("0g"), None);
        assert_eq!(super::decode("FF"), Some(vec![255]));
        assert_eq!(super::decode_array::<2>("000f"), Some([0, 15]));
        assert_eq!(super::decode_array::<2>("00"), None);
    }
}
