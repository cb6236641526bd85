//! Gorilla compression (Pelkonen et al., "Gorilla: A Fast, Scalable, In-Memory Time Series
//! Database", VLDB 2015) of one series' `(time in ms, value)` samples: timestamps as
//! delta-of-deltas, values XORed with the previous one. Regular scrapes cost about a bit or two per
//! timestamp, and slowly changing values a few bits each.

struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0–8; 8 means full).
    used: u8,
}

impl BitWriter {
    fn new() -> Self {
        Self {
            bytes: Vec::new(),
            used: 8,
        }
    }

    fn bit(&mut self, bit: bool) {
        if self.used == 8 {
            self.bytes.push(0);
            self.used = 0;
        }
        if bit {
            *self.bytes.last_mut().expect("a byte") |= 0x80 >> self.used;
        }
        self.used += 1;
    }

    /// The low `count` bits of `value`, most significant first.
    fn bits(&mut self, value: u64, count: u8) {
        for i in (0..count).rev() {
            self.bit(value >> i & 1 == 1);
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.at / 8)?;
        let bit = byte & (0x80 >> (self.at % 8)) != 0;
        self.at += 1;
        Some(bit)
    }

    fn bits(&mut self, count: u8) -> Option<u64> {
        let mut value = 0u64;
        for _ in 0..count {
            value = value << 1 | self.bit()? as u64;
        }
        Some(value)
    }
}

/// Delta-of-delta classes: (prefix bits, prefix length, value bits).
const DOD_CLASSES: [(u64, u8, u8); 4] = [
    (0b10, 2, 7),
    (0b110, 3, 9),
    (0b1110, 4, 12),
    (0b11110, 5, 20),
];

/// Encodes samples (times ascending) into a Gorilla chunk; [`decode`] needs their count.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut w = BitWriter::new();
    let Some(&(t0, v0)) = samples.first() else {
        return Vec::new();
    };
    w.bits(t0 as u64, 64);
    w.bits(v0.to_bits(), 64);
    let (mut prev_t, mut prev_delta) = (t0, 0i64);
    let (mut prev_v, mut lead, mut trail) = (v0.to_bits(), u8::MAX, 0u8);
    for &(t, v) in &samples[1..] {
        // Wrapping, as the decoder adds: any two times encode, however far apart.
        let delta = t.wrapping_sub(prev_t);
        let dod = delta.wrapping_sub(prev_delta);
        if dod == 0 {
            w.bit(false);
        } else {
            match DOD_CLASSES.iter().find(|(_, _, bits)| {
                let half = 1i64 << (bits - 1);
                (-half..half).contains(&dod)
            }) {
                Some(&(prefix, prefix_len, bits)) => {
                    w.bits(prefix, prefix_len);
                    w.bits(dod as u64, bits);
                }
                None => {
                    w.bits(0b11111, 5);
                    w.bits(dod as u64, 64);
                }
            }
        }
        prev_t = t;
        prev_delta = delta;

        let bits = v.to_bits();
        let xor = bits ^ prev_v;
        if xor == 0 {
            w.bit(false);
        } else {
            w.bit(true);
            let l = (xor.leading_zeros() as u8).min(31);
            let t = xor.trailing_zeros() as u8;
            if lead != u8::MAX && l >= lead && t >= trail {
                // Fits the previous window: only its meaningful bits.
                w.bit(false);
                w.bits(xor >> trail, 64 - lead - trail);
            } else {
                let meaningful = 64 - l - t;
                w.bit(true);
                w.bits(l as u64, 5);
                // 64 meaningful bits are written as 0 (6 bits hold 0–63).
                w.bits((meaningful & 63) as u64, 6);
                w.bits(xor >> t, meaningful);
                lead = l;
                trail = t;
            }
        }
        prev_v = bits;
    }
    w.bytes
}

/// Decodes `count` samples from a chunk; `None` when it is shorter than that (damaged).
pub fn decode(chunk: &[u8], count: usize) -> Option<Vec<(i64, f64)>> {
    let mut out = Vec::with_capacity(count);
    if count == 0 {
        return Some(out);
    }
    let mut r = BitReader {
        bytes: chunk,
        at: 0,
    };
    let t0 = r.bits(64)? as i64;
    let v0 = r.bits(64)?;
    out.push((t0, f64::from_bits(v0)));
    let (mut prev_t, mut prev_delta) = (t0, 0i64);
    let (mut prev_v, mut lead, mut trail) = (v0, 0u8, 0u8);
    while out.len() < count {
        let dod = if !r.bit()? {
            0
        } else {
            let mut ones = 1;
            while ones < 5 && r.bit()? {
                ones += 1;
            }
            let bits = match ones {
                1..=4 => DOD_CLASSES[ones - 1].2,
                _ => 64,
            };
            let raw = r.bits(bits)?;
            if bits == 64 {
                raw as i64
            } else {
                // Sign-extend.
                let shift = 64 - bits;
                ((raw << shift) as i64) >> shift
            }
        };
        let delta = prev_delta.wrapping_add(dod);
        let t = prev_t.wrapping_add(delta);
        prev_t = t;
        prev_delta = delta;

        let v = if !r.bit()? {
            prev_v
        } else {
            if r.bit()? {
                lead = r.bits(5)? as u8;
                let meaningful = match r.bits(6)? as u8 {
                    0 => 64,
                    m => m,
                };
                trail = 64u8.checked_sub(lead + meaningful)?;
            }
            let meaningful = 64 - lead - trail;
            let xor = r.bits(meaningful)? << trail;
            prev_v ^ xor
        };
        prev_v = v;
        out.push((t, f64::from_bits(v)));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(samples: &[(i64, f64)]) -> usize {
        let chunk = encode(samples);
        let back = decode(&chunk, samples.len()).expect("decodes");
        assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits());
        }
        chunk.len()
    }

    #[test]
    fn regular_scrapes_of_a_counter_take_about_two_bytes_a_sample() {
        let samples: Vec<(i64, f64)> = (0..1000)
            .map(|i| {
                (
                    1_700_000_000_000 + i * 10_000 + (i % 3) * 2,
                    (i * 17) as f64,
                )
            })
            .collect();
        let bytes = round_trip(&samples);
        assert!(bytes < 1000 * 3, "{bytes} bytes for 1000 samples");
    }

    #[test]
    fn every_kind_of_value_and_gap_round_trips() {
        let mut samples = vec![(-5_000, 0.0)];
        let values = [
            f64::NAN,
            f64::INFINITY,
            -0.0,
            1e300,
            -1e-300,
            0.1,
            0.1,
            3.0,
            f64::NEG_INFINITY,
            u64::MAX as f64,
            f64::from_bits(1),
            f64::from_bits(u64::MAX >> 1),
        ];
        let gaps = [
            1,
            1,
            1_000_000_000_000,
            2,
            70,
            300,
            3000,
            1_000_000,
            5,
            5,
            64,
        ];
        let mut t = -5_000i64;
        for (i, v) in values.iter().enumerate() {
            t += gaps[i % gaps.len()];
            samples.push((t, *v));
        }
        round_trip(&samples);
        round_trip(&samples[..1]);
        round_trip(&[]);
    }

    #[test]
    fn a_short_chunk_is_refused_not_misread() {
        let samples: Vec<(i64, f64)> = (0..50).map(|i| (i * 1000, i as f64 * 1.5)).collect();
        let chunk = encode(&samples);
        assert!(decode(&chunk[..chunk.len() / 2], samples.len()).is_none());
    }
}
