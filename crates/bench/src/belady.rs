//! Belady's offline optimum for a hit-ratio trace: the fewest misses any cache holding at most
//! a given number of items can have on it. It knows the whole trace, so on a miss it keeps the
//! new key only if that key is asked for again before some key it holds, and then drops the held
//! key asked for last (farthest in the future); a key never asked for again is not kept at all.
//! With every item the same size this is optimal (Belady 1966; with the choice not to keep a key,
//! as a look-aside cache has). It is the bound a replay's miss ratio is judged against: how much
//! of memcached's misses any cache of that many items could save on the same trace.

use std::collections::BinaryHeap;

/// "Never asked for again", as a position.
const NEVER: u32 = u32::MAX;

/// Replays `trace` (key numbers) on Belady's optimum holding at most `capacity` keys and calls
/// `record(position, key, hit)` for each request, in order; returns the most keys it held at once
/// (by the end it holds none: no key is asked for again). Key numbers index tables as long as the
/// largest, so keep them dense.
pub fn replay(
    trace: &[u64],
    capacity: usize,
    mut record: impl FnMut(usize, u64, bool),
) -> anyhow::Result<usize> {
    anyhow::ensure!(
        trace.len() < NEVER as usize,
        "the optimum replays traces of fewer than {NEVER} requests"
    );
    let keys = trace.iter().max().map_or(0, |&k| k as usize + 1);
    // next[i]: where trace[i]'s key is asked for next (NEVER if it is not).
    let mut next = vec![NEVER; trace.len()];
    let mut seen = vec![NEVER; keys];
    for (i, &k) in trace.iter().enumerate().rev() {
        next[i] = seen[k as usize];
        seen[k as usize] = i as u32;
    }
    drop(seen);
    // held[k]: the position key k is next asked for, while the cache holds it (NEVER: not held).
    // A key held is always asked for again, so that position is in the future.
    let mut held = vec![NEVER; keys];
    let mut count = 0usize;
    let mut most = 0usize;
    // Next uses of held keys, the farthest first. An entry is stale once its key was dropped or
    // hit (it then points at the past); stale entries are skipped when they surface, and cleared
    // out when they outnumber the live ones.
    let mut farthest: BinaryHeap<u32> = BinaryHeap::new();
    for (i, &k) in trace.iter().enumerate() {
        let ku = k as usize;
        let hit = held[ku] == i as u32;
        record(i, k, hit);
        let again = next[i];
        if hit {
            held[ku] = again;
            if again == NEVER {
                count -= 1;
            } else {
                farthest.push(again);
            }
        } else if again != NEVER && capacity > 0 {
            if count == capacity {
                let victim = loop {
                    let top = *farthest.peek().expect("a full cache has live entries");
                    if held[trace[top as usize] as usize] == top {
                        break top;
                    }
                    farthest.pop();
                };
                if victim < again {
                    // Every key held is wanted sooner than this one: do not keep it.
                    continue;
                }
                farthest.pop();
                held[trace[victim as usize] as usize] = NEVER;
                count -= 1;
            }
            held[ku] = again;
            count += 1;
            most = most.max(count);
            farthest.push(again);
        }
        if farthest.len() > 2 * count + 1024 {
            farthest.retain(|&p| held[trace[p as usize] as usize] == p);
        }
    }
    Ok(most)
}

#[cfg(test)]
mod tests {
    use super::replay;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn misses(trace: &[u64], capacity: usize) -> usize {
        let mut out = 0;
        let most = replay(trace, capacity, |_, _, hit| out += usize::from(!hit)).unwrap();
        assert!(most <= capacity, "held {most} keys in room for {capacity}");
        out
    }

    /// The fewest misses any cache of `capacity` keys can have on `trace`, by trying every
    /// choice at every miss (keep the key or not, and which held key to drop).
    fn fewest_by_search(trace: &[u64], capacity: usize, held: &mut Vec<u64>) -> usize {
        let Some((&k, rest)) = trace.split_first() else {
            return 0;
        };
        if held.contains(&k) {
            return fewest_by_search(rest, capacity, held);
        }
        // Not kept.
        let mut best = fewest_by_search(rest, capacity, held);
        if held.len() < capacity {
            held.push(k);
            best = best.min(fewest_by_search(rest, capacity, held));
            held.pop();
        } else {
            for slot in 0..held.len() {
                let dropped = std::mem::replace(&mut held[slot], k);
                best = best.min(fewest_by_search(rest, capacity, held));
                held[slot] = dropped;
            }
        }
        best + 1
    }

    #[test]
    fn the_textbook_trace() {
        // 1 2 3 4 1 2 5 1 2 3 4 5 with three frames: 7 misses for the optimum with every miss
        // kept; it may also leave a key out, which saves nothing here.
        let trace = [1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5];
        assert_eq!(misses(&trace, 3), 7);
        assert_eq!(misses(&trace, 4), 6);
        // Nothing held: every request misses.
        assert_eq!(misses(&trace, 0), trace.len());
        // Room for all: only the first request of each key misses.
        assert_eq!(misses(&trace, 5), 5);
        // With room for all, when 5 first comes (position 6) keys 1-4 are all wanted again: five
        // held at once. Each key is let go at its last request.
        assert_eq!(replay(&trace, 100, |_, _, _| ()).unwrap(), 5);
        assert_eq!(replay(&trace[..6], 100, |_, _, _| ()).unwrap(), 2);
    }

    #[test]
    fn it_matches_an_exhaustive_search_on_small_traces() {
        let mut rng = StdRng::seed_from_u64(7);
        for round in 0..300 {
            let len = rng.gen_range(1..=11);
            let keys = rng.gen_range(1..=5);
            let trace: Vec<u64> = (0..len).map(|_| rng.gen_range(0..keys)).collect();
            let capacity = rng.gen_range(0..=3);
            let best = fewest_by_search(&trace, capacity, &mut Vec::new());
            assert_eq!(
                misses(&trace, capacity),
                best,
                "round {round}: trace {trace:?}, capacity {capacity}"
            );
        }
    }

    #[test]
    fn positions_and_keys_come_in_order_and_stale_entries_are_cleared() {
        // A long trace over few keys with a small cache: many stale heap entries.
        let mut rng = StdRng::seed_from_u64(3);
        let trace: Vec<u64> = (0..200_000).map(|_| rng.gen_range(0..3000)).collect();
        let mut at = 0;
        let mut hits = 0;
        replay(&trace, 1000, |i, k, hit| {
            assert_eq!((i, k), (at, trace[at]));
            at += 1;
            hits += usize::from(hit);
        })
        .unwrap();
        assert_eq!(at, trace.len());
        // Uniform over 3000 keys with room for 1000: LRU would hit a third; the optimum more.
        assert!(hits > trace.len() / 3, "{hits}");
    }
}
