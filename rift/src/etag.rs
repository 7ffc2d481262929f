//! The ETag of an upload (the MD5 of its body), computed beside the write and, for concurrent
//! uploads, several messages at once.
//!
//! MD5 cannot be parallelised within one message: each 64-byte block depends on the previous
//! one, and one core hashes about 600 MB/s. Uploads are independent messages, though, so a
//! hashing thread (an *engine*; one per four cores) runs up to eight of them in the lanes of a
//! SIMD register (four with SSE2, eight with AVX2 when the CPU has it), at roughly the cost
//! of one. Each upload's writer hands its chunks to an engine ([`Md5::update`]) and writes
//! them to disk meanwhile; [`Md5::finish`] waits for the digest.
//!
//! Small bodies never reach the engine: the first [`INLINE_LIMIT`] bytes are hashed in the
//! caller's thread, where a handoff would cost more than the hashing.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

/// Bytes hashed in the caller's thread before a stream moves to the engine.
pub const INLINE_LIMIT: u64 = 1 << 20;
/// Bytes a stream may have queued at the engine before [`Md5::update`] waits.
const MAX_QUEUED: usize = 4 << 20;
/// Chunks a stream hashes in a lane before it gives the lane up to a waiting stream.
const TURN: usize = 16;
/// Blocks hashed per lane between two looks at the queues.
const ROUND_BLOCKS: usize = 512;

/// The engine has stopped (its thread could not start or panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the MD5 engine is not running")]
pub struct EngineGone;

// ---------------------------------------------------------------------------------------------
// MD5 (RFC 1321) over L independent messages.

/// `floor(abs(sin(i + 1)) * 2^32)`, RFC 1321 section 3.4.
const T: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

const INIT: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];

/// The 64 steps of MD5 on vectors of lanes, with the vector operations given as functions.
macro_rules! md5_block {
    ($x:ident, $a:ident, $b:ident, $c:ident, $d:ident,
     splat = $splat:expr, add = $add:expr, and = $and:expr, andnot = $andnot:expr,
     or = $or:expr, xor = $xor:expr, rotl = $rotl:ident) => {{
        let ones = $splat(u32::MAX);
        // The functions of RFC 1321 section 3.4, arranged so that the newest word (x) is
        // used as late as possible. In G the two terms share no bit, so they can be added.
        let f = |x, y, z| $xor(z, $and(x, $xor(y, z)));
        let g = |x, y, z| $add($and(x, z), $andnot(z, y));
        let h = |x, y, z| $xor(x, $xor(y, z));
        let i = |x, y, z| $xor(y, $or(x, $xor(z, ones)));
        macro_rules! step {
            ($fun:ident, $p:ident, $q:ident, $r:ident, $s:ident, $k:expr, $rot:expr, $t:expr) => {
                $p = $add(
                    $q,
                    $rotl!(
                        $add($add($p, $add($x[$k], $splat(T[$t]))), $fun($q, $r, $s)),
                        $rot
                    ),
                );
            };
        }
        step!(f, $a, $b, $c, $d, 0, 7, 0);
        step!(f, $d, $a, $b, $c, 1, 12, 1);
        step!(f, $c, $d, $a, $b, 2, 17, 2);
        step!(f, $b, $c, $d, $a, 3, 22, 3);
        step!(f, $a, $b, $c, $d, 4, 7, 4);
        step!(f, $d, $a, $b, $c, 5, 12, 5);
        step!(f, $c, $d, $a, $b, 6, 17, 6);
        step!(f, $b, $c, $d, $a, 7, 22, 7);
        step!(f, $a, $b, $c, $d, 8, 7, 8);
        step!(f, $d, $a, $b, $c, 9, 12, 9);
        step!(f, $c, $d, $a, $b, 10, 17, 10);
        step!(f, $b, $c, $d, $a, 11, 22, 11);
        step!(f, $a, $b, $c, $d, 12, 7, 12);
        step!(f, $d, $a, $b, $c, 13, 12, 13);
        step!(f, $c, $d, $a, $b, 14, 17, 14);
        step!(f, $b, $c, $d, $a, 15, 22, 15);

        step!(g, $a, $b, $c, $d, 1, 5, 16);
        step!(g, $d, $a, $b, $c, 6, 9, 17);
        step!(g, $c, $d, $a, $b, 11, 14, 18);
        step!(g, $b, $c, $d, $a, 0, 20, 19);
        step!(g, $a, $b, $c, $d, 5, 5, 20);
        step!(g, $d, $a, $b, $c, 10, 9, 21);
        step!(g, $c, $d, $a, $b, 15, 14, 22);
        step!(g, $b, $c, $d, $a, 4, 20, 23);
        step!(g, $a, $b, $c, $d, 9, 5, 24);
        step!(g, $d, $a, $b, $c, 14, 9, 25);
        step!(g, $c, $d, $a, $b, 3, 14, 26);
        step!(g, $b, $c, $d, $a, 8, 20, 27);
        step!(g, $a, $b, $c, $d, 13, 5, 28);
        step!(g, $d, $a, $b, $c, 2, 9, 29);
        step!(g, $c, $d, $a, $b, 7, 14, 30);
        step!(g, $b, $c, $d, $a, 12, 20, 31);

        step!(h, $a, $b, $c, $d, 5, 4, 32);
        step!(h, $d, $a, $b, $c, 8, 11, 33);
        step!(h, $c, $d, $a, $b, 11, 16, 34);
        step!(h, $b, $c, $d, $a, 14, 23, 35);
        step!(h, $a, $b, $c, $d, 1, 4, 36);
        step!(h, $d, $a, $b, $c, 4, 11, 37);
        step!(h, $c, $d, $a, $b, 7, 16, 38);
        step!(h, $b, $c, $d, $a, 10, 23, 39);
        step!(h, $a, $b, $c, $d, 13, 4, 40);
        step!(h, $d, $a, $b, $c, 0, 11, 41);
        step!(h, $c, $d, $a, $b, 3, 16, 42);
        step!(h, $b, $c, $d, $a, 6, 23, 43);
        step!(h, $a, $b, $c, $d, 9, 4, 44);
        step!(h, $d, $a, $b, $c, 12, 11, 45);
        step!(h, $c, $d, $a, $b, 15, 16, 46);
        step!(h, $b, $c, $d, $a, 2, 23, 47);

        step!(i, $a, $b, $c, $d, 0, 6, 48);
        step!(i, $d, $a, $b, $c, 7, 10, 49);
        step!(i, $c, $d, $a, $b, 14, 15, 50);
        step!(i, $b, $c, $d, $a, 5, 21, 51);
        step!(i, $a, $b, $c, $d, 12, 6, 52);
        step!(i, $d, $a, $b, $c, 3, 10, 53);
        step!(i, $c, $d, $a, $b, 10, 15, 54);
        step!(i, $b, $c, $d, $a, 1, 21, 55);
        step!(i, $a, $b, $c, $d, 8, 6, 56);
        step!(i, $d, $a, $b, $c, 15, 10, 57);
        step!(i, $c, $d, $a, $b, 6, 15, 58);
        step!(i, $b, $c, $d, $a, 13, 21, 59);
        step!(i, $a, $b, $c, $d, 4, 6, 60);
        step!(i, $d, $a, $b, $c, 11, 10, 61);
        step!(i, $c, $d, $a, $b, 2, 15, 62);
        step!(i, $b, $c, $d, $a, 9, 21, 63);
    }};
}

/// One 32-bit word per lane. Written as plain per-lane loops, which the compiler turns into
/// SIMD instructions of the width the calling function is compiled for.
#[derive(Clone, Copy)]
struct W<const L: usize>([u32; L]);

impl<const L: usize> W<L> {
    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(u32, u32) -> u32) -> Self {
        let mut r = [0u32; L];
        for (i, r) in r.iter_mut().enumerate() {
            *r = f(self.0[i], o.0[i]);
        }
        W(r)
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.zip(o, u32::wrapping_add)
    }
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        self.zip(o, |a, b| a & b)
    }
    #[inline(always)]
    fn or(self, o: Self) -> Self {
        self.zip(o, |a, b| a | b)
    }
    #[inline(always)]
    fn xor(self, o: Self) -> Self {
        self.zip(o, |a, b| a ^ b)
    }
    /// `!self & o`
    #[inline(always)]
    fn andnot(self, o: Self) -> Self {
        self.zip(o, |a, b| !a & b)
    }
    #[inline(always)]
    fn splat(x: u32) -> Self {
        W([x; L])
    }
    #[inline(always)]
    fn rotl(self, s: u32) -> Self {
        let mut r = self.0;
        for r in r.iter_mut() {
            *r = r.rotate_left(s);
        }
        W(r)
    }
}

/// Runs the 64 steps of one block in every lane: `state[w][lane]` is word `w` of lane `lane`.
#[inline(always)]
fn compress_lanes<const L: usize>(state: &mut [[u32; L]; 4], blocks: [&[u8; 64]; L]) {
    let mut x = [W([0u32; L]); 16];
    for (k, x) in x.iter_mut().enumerate() {
        for (lane, block) in blocks.iter().enumerate() {
            let b = &block[4 * k..4 * k + 4];
            x.0[lane] = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    let (mut a, mut b, mut c, mut d) = (W(state[0]), W(state[1]), W(state[2]), W(state[3]));
    macro_rules! rotl {
        ($v:expr, $s:expr) => {
            W::rotl($v, $s)
        };
    }
    md5_block!(
        x,
        a,
        b,
        c,
        d,
        splat = W::splat,
        add = W::add,
        and = W::and,
        andnot = W::andnot,
        or = W::or,
        xor = W::xor,
        rotl = rotl
    );
    state[0] = W(state[0]).add(a).0;
    state[1] = W(state[1]).add(b).0;
    state[2] = W(state[2]).add(c).0;
    state[3] = W(state[3]).add(d).0;
}

/// Hashes `n` blocks of each lane's data (`data[lane]` holds at least `64 * n` bytes).
#[inline(always)]
fn run_lanes<const L: usize>(state: &mut [[u32; L]; 4], data: [&[u8]; L], n: usize) {
    for k in 0..n {
        let blocks: [&[u8; 64]; L] = std::array::from_fn(|lane| {
            let b = &data[lane][64 * k..64 * k + 64];
            b.try_into().expect("64-byte block")
        });
        compress_lanes(state, blocks);
    }
}

fn run1(state: &mut [[u32; 1]; 4], data: [&[u8]; 1], n: usize) {
    run_lanes(state, data, n)
}

#[cfg(not(target_arch = "x86_64"))]
fn run4(state: &mut [[u32; 4]; 4], data: [&[u8]; 4], n: usize) {
    run_lanes(state, data, n)
}

#[cfg(target_arch = "x86_64")]
fn run4(state: &mut [[u32; 4]; 4], data: [&[u8]; 4], n: usize) {
    // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 CPU has it.
    unsafe { x86::run4_sse2(state, data, n) }
}

/// Whether eight lanes at once are available (AVX2).
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static WIDE: OnceLock<bool> = OnceLock::new();
        *WIDE.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! MD5 in the 32-bit lanes of SSE2 (four messages) and AVX2 (eight messages) registers.

    use std::arch::x86_64::*;

    use super::T;

    macro_rules! rotl128 {
        ($v:expr, $s:expr) => {
            _mm_or_si128(
                _mm_slli_epi32::<{ $s }>($v),
                _mm_srli_epi32::<{ 32 - $s }>($v),
            )
        };
    }

    macro_rules! rotl256 {
        ($v:expr, $s:expr) => {
            _mm256_or_si256(
                _mm256_slli_epi32::<{ $s }>($v),
                _mm256_srli_epi32::<{ 32 - $s }>($v),
            )
        };
    }

    /// Words `4q .. 4q + 4` of four 64-byte blocks, transposed: result `j` holds word `4q + j`
    /// of every block.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn transpose4(blocks: [&[u8; 64]; 4], q: usize) -> [__m128i; 4] {
        let load = |b: &[u8; 64]| {
            let part: &[u8; 16] = b[16 * q..16 * q + 16].try_into().expect("16 bytes");
            // SAFETY: `part` is 16 readable bytes; the load is unaligned.
            unsafe { _mm_loadu_si128(part.as_ptr().cast()) }
        };
        let (r0, r1, r2, r3) = (
            load(blocks[0]),
            load(blocks[1]),
            load(blocks[2]),
            load(blocks[3]),
        );
        let t0 = _mm_unpacklo_epi32(r0, r1);
        let t1 = _mm_unpacklo_epi32(r2, r3);
        let t2 = _mm_unpackhi_epi32(r0, r1);
        let t3 = _mm_unpackhi_epi32(r2, r3);
        [
            _mm_unpacklo_epi64(t0, t1),
            _mm_unpackhi_epi64(t0, t1),
            _mm_unpacklo_epi64(t2, t3),
            _mm_unpackhi_epi64(t2, t3),
        ]
    }

    fn lane_block(data: &[u8], k: usize) -> &[u8; 64] {
        data[64 * k..64 * k + 64].try_into().expect("64 bytes")
    }

    /// Four messages: `n` blocks of each `data[lane]`.
    #[target_feature(enable = "sse2")]
    pub(super) fn run4_sse2(state: &mut [[u32; 4]; 4], data: [&[u8]; 4], n: usize) {
        let load = |w: &[u32; 4]| {
            // SAFETY: 16 readable bytes.
            unsafe { _mm_loadu_si128(w.as_ptr().cast()) }
        };
        let (mut sa, mut sb, mut sc, mut sd) = (
            load(&state[0]),
            load(&state[1]),
            load(&state[2]),
            load(&state[3]),
        );
        for k in 0..n {
            let blocks: [&[u8; 64]; 4] = std::array::from_fn(|lane| lane_block(data[lane], k));
            let mut x = [_mm_setzero_si128(); 16];
            for q in 0..4 {
                x[4 * q..4 * q + 4].copy_from_slice(&transpose4(blocks, q));
            }
            let (mut a, mut b, mut c, mut d) = (sa, sb, sc, sd);
            let splat = |v: u32| _mm_set1_epi32(v as i32);
            md5_block!(
                x,
                a,
                b,
                c,
                d,
                splat = splat,
                add = _mm_add_epi32,
                and = _mm_and_si128,
                andnot = _mm_andnot_si128,
                or = _mm_or_si128,
                xor = _mm_xor_si128,
                rotl = rotl128
            );
            sa = _mm_add_epi32(sa, a);
            sb = _mm_add_epi32(sb, b);
            sc = _mm_add_epi32(sc, c);
            sd = _mm_add_epi32(sd, d);
        }
        for (w, v) in state.iter_mut().zip([sa, sb, sc, sd]) {
            // SAFETY: 16 writable bytes.
            unsafe { _mm_storeu_si128(w.as_mut_ptr().cast(), v) };
        }
    }

    /// Eight messages: `n` blocks of each `data[lane]`.
    #[target_feature(enable = "avx2")]
    pub(super) fn run8_avx2(state: &mut [[u32; 8]; 4], data: [&[u8]; 8], n: usize) {
        let load = |w: &[u32; 8]| {
            // SAFETY: 32 readable bytes.
            unsafe { _mm256_loadu_si256(w.as_ptr().cast()) }
        };
        let (mut sa, mut sb, mut sc, mut sd) = (
            load(&state[0]),
            load(&state[1]),
            load(&state[2]),
            load(&state[3]),
        );
        for k in 0..n {
            let lo: [&[u8; 64]; 4] = std::array::from_fn(|lane| lane_block(data[lane], k));
            let hi: [&[u8; 64]; 4] = std::array::from_fn(|lane| lane_block(data[4 + lane], k));
            let mut x = [_mm256_setzero_si256(); 16];
            for q in 0..4 {
                let l = transpose4(lo, q);
                let h = transpose4(hi, q);
                for j in 0..4 {
                    x[4 * q + j] = _mm256_set_m128i(h[j], l[j]);
                }
            }
            let (mut a, mut b, mut c, mut d) = (sa, sb, sc, sd);
            let splat = |v: u32| _mm256_set1_epi32(v as i32);
            md5_block!(
                x,
                a,
                b,
                c,
                d,
                splat = splat,
                add = _mm256_add_epi32,
                and = _mm256_and_si256,
                andnot = _mm256_andnot_si256,
                or = _mm256_or_si256,
                xor = _mm256_xor_si256,
                rotl = rotl256
            );
            sa = _mm256_add_epi32(sa, a);
            sb = _mm256_add_epi32(sb, b);
            sc = _mm256_add_epi32(sc, c);
            sd = _mm256_add_epi32(sd, d);
        }
        for (w, v) in state.iter_mut().zip([sa, sb, sc, sd]) {
            // SAFETY: 32 writable bytes.
            unsafe { _mm256_storeu_si256(w.as_mut_ptr().cast(), v) };
        }
    }
}

/// Hashes `n` blocks of every message, several messages side by side.
fn compress_many(states: &mut [&mut [u32; 4]], data: &[&[u8]], n: usize) {
    debug_assert_eq!(states.len(), data.len());
    let mut done = 0;
    while done < states.len() {
        let left = states.len() - done;
        if left == 1 {
            let s = &mut *states[done];
            let mut st = [[s[0]], [s[1]], [s[2]], [s[3]]];
            run1(&mut st, [data[done]], n);
            *s = [st[0][0], st[1][0], st[2][0], st[3][0]];
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if left > 2 && wide() {
            let k = left.min(8);
            let (st, d) = gather::<8>(&states[done..done + k], &data[done..done + k], n);
            let mut st = st;
            // SAFETY: `wide()` checked that the CPU supports AVX2.
            unsafe { x86::run8_avx2(&mut st, d, n) };
            scatter(&st, &mut states[done..done + k]);
            done += k;
            continue;
        }
        let k = left.min(4);
        let (mut st, d) = gather::<4>(&states[done..done + k], &data[done..done + k], n);
        run4(&mut st, d, n);
        scatter(&st, &mut states[done..done + k]);
        done += k;
    }
}

/// Transposes up to `L` states into lanes; unused lanes hash zeros and are dropped.
fn gather<'a, const L: usize>(
    states: &[&mut [u32; 4]],
    data: &[&'a [u8]],
    n: usize,
) -> ([[u32; L]; 4], [&'a [u8]; L]) {
    static ZEROS: [u8; 64 * ROUND_BLOCKS] = [0; 64 * ROUND_BLOCKS];
    debug_assert!(n <= ROUND_BLOCKS);
    let mut st = [[0u32; L]; 4];
    let mut d: [&[u8]; L] = [&ZEROS[..]; L];
    for (lane, s) in states.iter().enumerate() {
        for w in 0..4 {
            st[w][lane] = s[w];
        }
        d[lane] = data[lane];
    }
    (st, d)
}

fn scatter<const L: usize>(st: &[[u32; L]; 4], states: &mut [&mut [u32; 4]]) {
    for (lane, s) in states.iter_mut().enumerate() {
        for w in 0..4 {
            s[w] = st[w][lane];
        }
    }
}

/// The running state of one message.
#[derive(Debug, Clone)]
struct State {
    abcd: [u32; 4],
    /// A partial block waiting for more bytes.
    buf: [u8; 64],
    buf_len: usize,
    /// Bytes hashed so far (including `buf`).
    len: u64,
}

impl State {
    fn new() -> Self {
        State {
            abcd: INIT,
            buf: [0; 64],
            buf_len: 0,
            len: 0,
        }
    }

    /// Completes the partial block from `data`; returns how many bytes were used. Afterwards
    /// either the buffer is empty or `data` was used up.
    fn fill(&mut self, data: &[u8]) -> usize {
        if self.buf_len == 0 {
            return 0;
        }
        let take = (64 - self.buf_len).min(data.len());
        self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
        self.buf_len += take;
        self.len += take as u64;
        if self.buf_len == 64 {
            let block = self.buf;
            self.compress(&block);
            self.buf_len = 0;
        }
        take
    }

    /// Keeps a tail of fewer than 64 bytes for later (the buffer must be empty).
    fn keep(&mut self, tail: &[u8]) {
        debug_assert!(self.buf_len == 0 && tail.len() < 64);
        self.buf[..tail.len()].copy_from_slice(tail);
        self.buf_len = tail.len();
        self.len += tail.len() as u64;
    }

    fn compress(&mut self, data: &[u8]) {
        let mut st = [
            [self.abcd[0]],
            [self.abcd[1]],
            [self.abcd[2]],
            [self.abcd[3]],
        ];
        run1(&mut st, [data], data.len() / 64);
        self.abcd = [st[0][0], st[1][0], st[2][0], st[3][0]];
    }

    /// Hashes `data` in this thread.
    fn update(&mut self, mut data: &[u8]) {
        data = &data[self.fill(data)..];
        let whole = data.len() / 64 * 64;
        if whole > 0 {
            self.compress(&data[..whole]);
            self.len += whole as u64;
        }
        if whole < data.len() {
            self.keep(&data[whole..]);
        }
    }

    fn finalize(mut self) -> [u8; 16] {
        let bits = self.len.wrapping_mul(8);
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let zeros = (55usize.wrapping_sub(self.buf_len)) % 64;
        let end = 1 + zeros;
        pad[end..end + 8].copy_from_slice(&bits.to_le_bytes());
        self.update(&pad[..end + 8]);
        debug_assert_eq!(self.buf_len, 0);
        let mut out = [0u8; 16];
        for (w, o) in self.abcd.iter().zip(out.chunks_exact_mut(4)) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The engine: one thread hashing every stream that has queued data, side by side.

#[derive(Default)]
struct Slot {
    queue: VecDeque<Bytes>,
    queued: usize,
    /// The state while the engine is not working on this stream.
    state: Option<State>,
    /// In the runnable queue or in a lane.
    scheduled: bool,
    finishing: bool,
    abandoned: bool,
    /// The writer waits for queue space.
    waiting: bool,
    digest: Option<[u8; 16]>,
}

impl Slot {
    /// Takes the next chunk; says whether a waiting writer should be woken.
    fn pop(&mut self) -> Option<(Bytes, bool)> {
        let c = self.queue.pop_front()?;
        self.queued -= c.len();
        let wake = self.waiting && self.queued <= MAX_QUEUED / 2;
        if wake {
            self.waiting = false;
        }
        Some((c, wake))
    }
}

#[derive(Default)]
struct Inner {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    runnable: VecDeque<usize>,
    dead: bool,
}

impl Inner {
    fn slot(&mut self, id: usize) -> &mut Slot {
        self.slots[id].as_mut().expect("live slot")
    }

    fn release(&mut self, id: usize) {
        self.slots[id] = None;
        self.free.push(id);
    }

    fn schedule(&mut self, id: usize) -> bool {
        let s = self.slot(id);
        if s.scheduled {
            return false;
        }
        s.scheduled = true;
        self.runnable.push_back(id);
        true
    }
}

struct Shared {
    inner: Mutex<Inner>,
    /// The engine waits here for work.
    work: Condvar,
    /// Writers wait here for queue space and digests.
    progress: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Lane {
    id: usize,
    state: State,
    chunk: Bytes,
    pos: usize,
    /// Chunks taken since the stream got this lane.
    turn: usize,
}

/// Marks the engine dead if its thread unwinds, so that no writer waits forever.
struct DeathGuard(Arc<Shared>);

impl Drop for DeathGuard {
    fn drop(&mut self) {
        self.0.lock().dead = true;
        self.0.progress.notify_all();
    }
}

/// The engine with the fewest streams. There is one engine per four cores (at least one):
/// eight lanes of one core hash about as fast as eight cores one message each.
fn engine() -> Arc<Shared> {
    static ENGINES: OnceLock<Vec<Arc<Shared>>> = OnceLock::new();
    let engines = ENGINES.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..cores.div_ceil(4)).map(start_engine).collect()
    });
    let least = engines
        .iter()
        .min_by_key(|e| {
            let g = e.lock();
            g.slots.len() - g.free.len()
        })
        .expect("at least one engine");
    Arc::clone(least)
}

fn start_engine(n: usize) -> Arc<Shared> {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner::default()),
        work: Condvar::new(),
        progress: Condvar::new(),
    });
    let s = Arc::clone(&shared);
    let started = std::thread::Builder::new()
        .name(format!("rift-md5-{n}"))
        .spawn(move || {
            let guard = DeathGuard(s);
            engine_loop(&guard.0);
        });
    if started.is_err() {
        shared.lock().dead = true;
    }
    shared
}

fn engine_loop(shared: &Shared) {
    let max_lanes = if wide() { 8 } else { 4 };
    let mut lanes: Vec<Lane> = Vec::with_capacity(max_lanes);
    loop {
        {
            let mut g = shared.lock();
            let mut progressed = false;
            // Lanes whose chunk is used up take the stream's next chunk or leave.
            let mut k = 0;
            while k < lanes.len() {
                if lanes[k].pos < lanes[k].chunk.len() {
                    k += 1;
                    continue;
                }
                let id = lanes[k].id;
                let others_wait = !g.runnable.is_empty();
                let slot = g.slot(id);
                if slot.abandoned {
                    lanes.swap_remove(k);
                    g.release(id);
                    continue;
                }
                if others_wait && lanes[k].turn >= TURN {
                    // Streams are waiting for a lane: this one queues up again behind them.
                    let lane = lanes.swap_remove(k);
                    slot.state = Some(lane.state);
                    g.runnable.push_back(id);
                    continue;
                }
                if let Some((c, wake)) = slot.pop() {
                    lanes[k].chunk = c;
                    lanes[k].pos = 0;
                    lanes[k].turn += 1;
                    progressed |= wake;
                    k += 1;
                    continue;
                }
                let lane = lanes.swap_remove(k);
                if slot.finishing {
                    slot.digest = Some(lane.state.finalize());
                    progressed = true;
                } else {
                    slot.state = Some(lane.state);
                }
                slot.scheduled = false;
            }
            // Free lanes take runnable streams.
            while lanes.len() < max_lanes {
                let Some(id) = g.runnable.pop_front() else {
                    break;
                };
                let slot = g.slot(id);
                if slot.abandoned {
                    g.release(id);
                    continue;
                }
                let state = slot.state.take().expect("state of an idle stream");
                match slot.pop() {
                    Some((c, wake)) => {
                        progressed |= wake;
                        lanes.push(Lane {
                            id,
                            state,
                            chunk: c,
                            pos: 0,
                            turn: 1,
                        });
                    }
                    None => {
                        if slot.finishing {
                            slot.digest = Some(state.finalize());
                            progressed = true;
                        } else {
                            slot.state = Some(state);
                        }
                        slot.scheduled = false;
                    }
                }
            }
            if progressed {
                shared.progress.notify_all();
            }
            if lanes.is_empty() {
                drop(shared.work.wait(g));
                continue;
            }
        }
        hash_round(&mut lanes);
    }
}

/// Hashes part of every lane's chunk (without the lock).
fn hash_round(lanes: &mut [Lane]) {
    // Partial blocks left by the previous chunk are completed one stream at a time.
    for l in lanes.iter_mut() {
        l.pos += l.state.fill(&l.chunk[l.pos..]);
    }
    let n = lanes
        .iter()
        .filter(|l| l.chunk.len() - l.pos >= 64)
        .map(|l| (l.chunk.len() - l.pos) / 64)
        .min()
        .unwrap_or(0)
        .min(ROUND_BLOCKS);
    if n > 0 {
        let mut active: Vec<&mut Lane> = lanes
            .iter_mut()
            .filter(|l| l.chunk.len() - l.pos >= 64)
            .collect();
        {
            let (mut states, data): (Vec<&mut [u32; 4]>, Vec<&[u8]>) = active
                .iter_mut()
                .map(|l| {
                    let Lane {
                        state, chunk, pos, ..
                    } = &mut **l;
                    (&mut state.abcd, &chunk[*pos..])
                })
                .unzip();
            compress_many(&mut states, &data, n);
        }
        for l in active.iter_mut() {
            l.pos += 64 * n;
            l.state.len += 64 * n as u64;
        }
    }
    // Tails shorter than a block wait for the next chunk.
    for l in lanes.iter_mut() {
        let left = l.chunk.len() - l.pos;
        if left > 0 && left < 64 && l.state.buf_len == 0 {
            l.state.keep(&l.chunk[l.pos..]);
            l.pos = l.chunk.len();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The handle of one upload.

enum Mode {
    /// Hashed in the caller's thread so far.
    Inline(State),
    /// Registered with the engine under this slot.
    Engine(Arc<Shared>, usize),
    /// Finished or failed.
    Done,
}

/// The MD5 of one message, fed chunk by chunk.
pub struct Md5 {
    mode: Mode,
}

impl Default for Md5 {
    fn default() -> Self {
        Md5::new()
    }
}

impl std::fmt::Debug for Md5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Md5")
    }
}

impl Md5 {
    /// An empty message.
    pub fn new() -> Self {
        Md5 {
            mode: Mode::Inline(State::new()),
        }
    }

    /// Appends `data`. Past [`INLINE_LIMIT`] bytes this hands the data to the engine and may
    /// wait (blocking) while the stream has too much queued there.
    pub fn update(&mut self, data: Bytes) -> Result<(), EngineGone> {
        match &mut self.mode {
            Mode::Inline(st) => {
                if st.len + data.len() as u64 <= INLINE_LIMIT {
                    st.update(&data);
                    return Ok(());
                }
                let state = st.clone();
                let shared = engine();
                let id = {
                    let mut g = shared.lock();
                    if g.dead {
                        self.mode = Mode::Done;
                        return Err(EngineGone);
                    }
                    let slot = Slot {
                        state: Some(state),
                        ..Slot::default()
                    };
                    match g.free.pop() {
                        Some(id) => {
                            g.slots[id] = Some(slot);
                            id
                        }
                        None => {
                            g.slots.push(Some(slot));
                            g.slots.len() - 1
                        }
                    }
                };
                self.mode = Mode::Engine(shared, id);
                self.update(data)
            }
            Mode::Engine(shared, id) => {
                let id = *id;
                let mut g = shared.lock();
                loop {
                    if g.dead {
                        return Err(EngineGone);
                    }
                    let slot = g.slot(id);
                    if slot.queued < MAX_QUEUED {
                        break;
                    }
                    slot.waiting = true;
                    g = shared.progress.wait(g).unwrap_or_else(|p| p.into_inner());
                }
                let slot = g.slot(id);
                slot.queued += data.len();
                slot.queue.push_back(data);
                if g.schedule(id) {
                    shared.work.notify_one();
                }
                Ok(())
            }
            Mode::Done => Err(EngineGone),
        }
    }

    /// The digest of everything appended (waits for the engine to catch up).
    pub fn finish(mut self) -> Result<[u8; 16], EngineGone> {
        match std::mem::replace(&mut self.mode, Mode::Done) {
            Mode::Inline(st) => Ok(st.finalize()),
            Mode::Engine(shared, id) => {
                let mut g = shared.lock();
                g.slot(id).finishing = true;
                if g.schedule(id) {
                    shared.work.notify_one();
                }
                loop {
                    if let Some(d) = g.slot(id).digest {
                        g.release(id);
                        return Ok(d);
                    }
                    if g.dead {
                        return Err(EngineGone);
                    }
                    g = shared.progress.wait(g).unwrap_or_else(|p| p.into_inner());
                }
            }
            Mode::Done => Err(EngineGone),
        }
    }
}

impl Drop for Md5 {
    fn drop(&mut self) {
        if let Mode::Engine(shared, id) = std::mem::replace(&mut self.mode, Mode::Done) {
            let mut g = shared.lock();
            if g.dead {
                return;
            }
            let slot = g.slot(id);
            if slot.scheduled {
                // The engine frees it when it next looks at it.
                slot.abandoned = true;
            } else {
                g.release(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest as _;

    #[test]
    fn constants_are_the_rfc_sines() {
        for (k, t) in T.iter().enumerate() {
            let v = ((k as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32;
            assert_eq!(*t, v, "T[{k}]");
        }
    }

    fn reference(data: &[u8]) -> [u8; 16] {
        md5::Md5::digest(data).into()
    }

    #[test]
    fn inline_matches_the_reference() {
        for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000] {
            let data: Vec<u8> = (0..len).map(|k| (k * 7 + 3) as u8).collect();
            let mut m = Md5::new();
            m.update(Bytes::from(data.clone())).unwrap();
            assert_eq!(m.finish().unwrap(), reference(&data), "len {len}");
        }
    }

    #[test]
    fn lanes_match_the_reference() {
        // Every lane count, through compress_many directly.
        for count in 1..=9 {
            let msgs: Vec<Vec<u8>> = (0..count)
                .map(|m| (0..64 * 5).map(|k| (k * 31 + m * 17) as u8).collect())
                .collect();
            let mut states: Vec<[u32; 4]> = vec![INIT; count];
            {
                let mut refs: Vec<&mut [u32; 4]> = states.iter_mut().collect();
                let data: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
                compress_many(&mut refs, &data, 5);
            }
            for (m, s) in msgs.iter().zip(&states) {
                let mut st = State::new();
                st.update(m);
                assert_eq!(st.abcd, *s, "{count} lanes");
            }
        }
    }

    #[test]
    fn engine_streams_match_the_reference() {
        // Several concurrent streams with odd chunk sizes, through the engine.
        let handles: Vec<_> = (0..6)
            .map(|t| {
                std::thread::spawn(move || {
                    let len = INLINE_LIMIT as usize * 3 + t * 1001;
                    let data: Vec<u8> = (0..len).map(|k| (k * (t + 3) + k / 7) as u8).collect();
                    let mut m = Md5::new();
                    let mut pos = 0;
                    let mut step = 1 + t * 997;
                    while pos < len {
                        let end = (pos + step).min(len);
                        m.update(Bytes::copy_from_slice(&data[pos..end])).unwrap();
                        pos = end;
                        step = (step * 3 + 17) % 300_000 + 1;
                    }
                    assert_eq!(m.finish().unwrap(), reference(&data), "stream {t}");
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn an_abandoned_stream_is_freed() {
        let mut m = Md5::new();
        m.update(Bytes::from(vec![1u8; INLINE_LIMIT as usize + 100]))
            .unwrap();
        drop(m);
        let mut m = Md5::new();
        let data = vec![2u8; INLINE_LIMIT as usize + 5];
        m.update(Bytes::from(data.clone())).unwrap();
        assert_eq!(m.finish().unwrap(), reference(&data));
    }

    #[test]
    fn streams_beyond_the_lanes_get_a_turn() {
        // More streams than lanes, all fed without pause: a late one still finishes while the
        // others keep going (lanes rotate), rather than waiting for one of them to end.
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let chunk = Bytes::from(vec![5u8; 256 * 1024]);
        let busy: Vec<_> = (0..9)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let chunk = chunk.clone();
                std::thread::spawn(move || {
                    let mut m = Md5::new();
                    while !stop.load(Ordering::Relaxed) {
                        m.update(chunk.clone()).unwrap();
                    }
                    m.finish().unwrap()
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let data = vec![9u8; INLINE_LIMIT as usize * 2];
            let mut m = Md5::new();
            for c in data.chunks(100_000) {
                m.update(Bytes::copy_from_slice(c)).unwrap();
            }
            let _ = tx.send((m.finish().unwrap(), reference(&data)));
        });
        let done = rx.recv_timeout(std::time::Duration::from_secs(60));
        stop.store(true, Ordering::Relaxed);
        for b in busy {
            b.join().unwrap();
        }
        let (got, want) = done.expect("the late stream finished while the others were busy");
        assert_eq!(got, want);
    }
}
