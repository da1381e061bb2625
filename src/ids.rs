//! Lock and deployment ids in the documented format:
//! `{prefix}_{16 hex of the nanosecond Unix time}_{24 hex of OS randomness}`.

use std::io::Read;

use jiff::Timestamp;

/// `lock_…` and `dep_…` share the time and the random part, as the legacy did,
/// so the pair is recognisable in logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockIds {
    pub lock_id: String,
    pub deployment_id: String,
}

pub fn new_ids(now: Timestamp) -> std::io::Result<LockIds> {
    let mut random = [0u8; 12];
    // getrandom(2) would do as well; /dev/urandom keeps this free of unsafe.
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    Ok(ids_from(now, &random))
}

fn ids_from(now: Timestamp, random: &[u8; 12]) -> LockIds {
    // Nanoseconds since 1970 fit in 64 bits until the year 2554.
    let nanos = now.as_nanosecond().max(0) as u64;
    let mut hex = String::with_capacity(24);
    for b in random {
        hex.push_str(&format!("{b:02x}"));
    }
    let body = format!("{nanos:016x}_{hex}");
    LockIds {
        lock_id: format!("lock_{body}"),
        deployment_id: format!("dep_{body}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_matches_the_documented_example() {
        let t = Timestamp::from_nanosecond(0x1890d66a41888860).unwrap();
        let r = [
            0x47, 0x44, 0x8a, 0x50, 0xc1, 0xf6, 0x1c, 0xc6, 0xbe, 0x49, 0xea, 0xf4,
        ];
        let ids = ids_from(t, &r);
        assert_eq!(
            ids.lock_id,
            "lock_1890d66a41888860_47448a50c1f61cc6be49eaf4"
        );
        assert_eq!(
            ids.deployment_id,
            "dep_1890d66a41888860_47448a50c1f61cc6be49eaf4"
        );
    }

    #[test]
    fn fresh_ids_differ() {
        let now = Timestamp::now();
        let a = new_ids(now).unwrap();
        let b = new_ids(now).unwrap();
        assert_ne!(a.lock_id, b.lock_id);
        assert_eq!(a.lock_id.len(), "lock_".len() + 16 + 1 + 24);
    }
}
