/*
 * content-hash.c (part of ferry_native): ferry's content hash, "xxh3x2" (fs/checksum.ts):
 * XXH3-64 of the bytes with seed 0, then XXH3-64 with seed 0x9e3779b97f4a7c15, each
 * big-endian, 16 bytes in all. This file is ferry's own implementation of seeded XXH3-64
 * (the algorithm of xxHash's doc/xxhash_spec.md); no xxHash code is built in.
 *
 * Why XXH3: it is the family rsync 3.2 uses for its whole-file checksum, and once vector
 * instructions do the work it runs several times faster than XXH64 on the same bytes. Two
 * seeded XXH3-64 rather than XXH3-128 because the TypeScript fallback (@node-rs/xxhash)
 * streams XXH3-64 only, and both must give the same digest.
 *
 * How. Inputs of up to 240 bytes take XXH3's short paths (0, 1-3, 4-8, 9-16, 17-128 and
 * 129-240 bytes), each seed on its own: they are a handful of multiplications. Longer
 * inputs run the stripe loop: 64-byte stripes, each folded into eight 64-bit accumulators
 * with 8 bytes of the secret more per stripe, a scramble of the accumulators after every
 * 16 stripes (a 1 KiB block), then the last 64 bytes of the input once more with a secret
 * at an odd offset, and the accumulators merged into 64 bits. Seed 0 uses XXH3's default
 * secret; any other seed a secret derived from it (each 16 bytes: +seed, -seed).
 * Both seeds go through the loop together: each stripe is loaded once and folded into two
 * accumulator sets, one per secret, so the bytes are read once for the 16-byte digest. The
 * loop ("kernel") exists four times: portable C, SSE2 (every x86-64), AVX2 and AVX-512F;
 * the addon is built without -march flags (it must run on any x86-64, including the kernel
 * lab's emulated CPU), so the AVX ones are compiled with target attributes and the best one
 * the CPU (and its OS) supports is chosen at the first long input. All kernels compute the
 * same accumulators, so which one ran never shows in a digest or a state.
 *
 * Streaming keeps the algorithm's one-shot rule: a stripe is folded in only once at least
 * one byte follows it (the input's last stripe is treated specially), so up to 256 bytes
 * wait in a buffer inside the state, and the last folded stripe stays at the buffer's end,
 * where the digest finds the bytes before a short tail. Any split of the input gives the
 * one-shot's digest.
 *
 * The state lives in caller-owned memory of content_hash_state_bytes() bytes (no allocation,
 * no finalizer, no alignment promised): a header copied in and out of an aligned local, and
 * the buffer used in place. Since JavaScript can write that memory, content_hash_valid()
 * checks everything the code trusts: a format tag, the buffered length (<= the buffer), the
 * stripe counter (< 16), and that both agree with the total length. The seeds and secrets
 * are constants of this file, never read from the state.
 *
 * Verified by test/content-hash-xxh3.test.ts against @node-rs/xxhash (XXH3-64 as released):
 * every length 0-2048, random lengths up to some MiB, both seeds, random splits, unaligned
 * buffers, with each kernel this CPU has (content_hash_use_kernel).
 */
#include <stdint.h>
#include <string.h>

#include "content-hash.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_X86_KERNELS 1
#include <immintrin.h>
#endif

#define SEED_B 0x9e3779b97f4a7c15ULL

#define STRIPE 64
#define SECRET_BYTES 192
#define STRIPES_PER_BLOCK ((SECRET_BYTES - STRIPE) / 8) /* 16: a block is 1 KiB */
#define SCRAMBLE_AT (SECRET_BYTES - STRIPE)              /* the scramble's 64 secret bytes */
#define LAST_STRIPE_AT (SECRET_BYTES - STRIPE - 7)       /* the last stripe's, at an odd offset */
#define MERGE_AT 11
#define SHORT_MAX 240
#define BUF_BYTES 256

#define P32_1 0x9E3779B1U
#define P32_2 0x85EBCA77U
#define P32_3 0xC2B2AE3DU
#define P64_1 0x9E3779B185EBCA87ULL
#define P64_2 0xC2B2AE3D27D4EB4FULL
#define P64_3 0x165667B19E3779F9ULL
#define P64_4 0x85EBCA77C2B2AE63ULL
#define P64_5 0x27D4EB2F165667C5ULL
#define MX1 0x165667919E3779F9ULL
#define MX2 0x9FB21C651E98DF25ULL

/* XXH3's default secret (the seed-0 secret). */
static const uint8_t k_secret[SECRET_BYTES] __attribute__((aligned(64))) = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

/* ---------------------------------------------------------------- arithmetic */

static inline uint64_t le64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

static inline uint32_t le32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  return v;
}

static inline void put_le64(uint8_t *p, uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  memcpy(p, &v, 8);
}

static inline uint64_t rotl64(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }

/* The 128-bit product of a and b, its two halves xored together. */
static inline uint64_t mul_fold(uint64_t a, uint64_t b) {
#ifdef __SIZEOF_INT128__
  unsigned __int128 p = (unsigned __int128)a * b;
  return (uint64_t)p ^ (uint64_t)(p >> 64);
#else
  uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
  uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
  uint64_t lo = (mid << 32) | (uint32_t)ll;
  uint64_t hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
  return lo ^ hi;
#endif
}

/* XXH64's final mix (used by XXH3 for 0-3 bytes). */
static uint64_t mix_xxh64(uint64_t h) {
  h ^= h >> 33;
  h *= P64_2;
  h ^= h >> 29;
  h *= P64_3;
  return h ^ (h >> 32);
}

/* XXH3's final mix. */
static uint64_t mix_final(uint64_t h) {
  h ^= h >> 37;
  h *= MX1;
  return h ^ (h >> 32);
}

/* XXH3's final mix for 4-8 bytes, which also folds in the length. */
static uint64_t mix_4to8(uint64_t h, uint64_t len) {
  h ^= rotl64(h, 49) ^ rotl64(h, 24);
  h *= MX2;
  h ^= (h >> 35) + len;
  h *= MX2;
  return h ^ (h >> 28);
}

/* ---------------------------------------------------------------- inputs of 0-240 bytes */

/* 16 input bytes against 16 secret bytes, keyed by the seed. */
static inline uint64_t mix16(const uint8_t *in, const uint8_t *sec, uint64_t seed) {
  return mul_fold(le64(in) ^ (le64(sec) + seed), le64(in + 8) ^ (le64(sec + 8) - seed));
}

static uint64_t hash_short(const uint8_t *in, size_t len, uint64_t seed) {
  const uint8_t *s = k_secret;
  if (len == 0) return mix_xxh64(seed ^ le64(s + 56) ^ le64(s + 64));
  if (len <= 3) {
    uint32_t word = ((uint32_t)in[0] << 16) | ((uint32_t)in[len >> 1] << 24) | (uint32_t)in[len - 1] | ((uint32_t)len << 8);
    return mix_xxh64((uint64_t)word ^ ((uint64_t)(le32(s) ^ le32(s + 4)) + seed));
  }
  if (len <= 8) {
    uint64_t sd = seed ^ ((uint64_t)__builtin_bswap32((uint32_t)seed) << 32);
    uint64_t word = (uint64_t)le32(in + len - 4) + ((uint64_t)le32(in) << 32);
    return mix_4to8(word ^ ((le64(s + 8) ^ le64(s + 16)) - sd), len);
  }
  if (len <= 16) {
    uint64_t lo = le64(in) ^ ((le64(s + 24) ^ le64(s + 32)) + seed);
    uint64_t hi = le64(in + len - 8) ^ ((le64(s + 40) ^ le64(s + 48)) - seed);
    return mix_final(len + __builtin_bswap64(lo) + hi + mul_fold(lo, hi));
  }
  uint64_t acc = len * P64_1;
  if (len <= 128) {
    /* Pairs of 16 bytes from both ends, moving inward: 2, 4, 6 or 8 of them. */
    size_t pairs = (len - 1) / 32 + 1;
    for (size_t i = 0; i < pairs; i++) {
      acc += mix16(in + 16 * i, s + 32 * i, seed);
      acc += mix16(in + len - 16 * (i + 1), s + 32 * i + 16, seed);
    }
    return mix_final(acc);
  }
  /* 129-240 bytes: the first 128 bytes, then the rest 16 at a time against the secret
   * from offset 3, and the last 16 bytes at offset 119. */
  for (size_t i = 0; i < 8; i++) acc += mix16(in + 16 * i, s + 16 * i, seed);
  acc = mix_final(acc);
  uint64_t tail = mix16(in + len - 16, s + 119, seed);
  for (size_t i = 8; i < len / 16; i++) tail += mix16(in + 16 * i, s + 16 * (i - 8) + 3, seed);
  return mix_final(acc + tail);
}

/* ---------------------------------------------------------------- the stripe loop, four times */

/*
 * A kernel folds n stripes at p into both accumulator sets (acc[0..8) with secret a,
 * acc[8..16) with secret b), the stripe after *count in the block using the secrets 8 * that
 * far in, and scrambles both sets whenever a block is complete. acc and the secrets need no
 * alignment.
 */
typedef void kernel_fn(uint64_t acc[16], unsigned *count, const uint8_t *p, size_t n, const uint8_t *a, const uint8_t *b);

static void kernel_scalar(uint64_t acc[16], unsigned *count, const uint8_t *p, size_t n, const uint8_t *a, const uint8_t *b) {
  unsigned c = *count;
  while (n > 0) {
    size_t m = STRIPES_PER_BLOCK - c < n ? STRIPES_PER_BLOCK - c : n;
    for (size_t i = 0; i < m; i++, p += STRIPE) {
      const uint8_t *ka = a + 8 * (c + i), *kb = b + 8 * (c + i);
      for (int j = 0; j < 8; j++) {
        uint64_t d = le64(p + 8 * j);
        uint64_t xa = d ^ le64(ka + 8 * j), xb = d ^ le64(kb + 8 * j);
        acc[j ^ 1] += d;
        acc[8 + (j ^ 1)] += d;
        acc[j] += (xa & 0xffffffffU) * (xa >> 32);
        acc[8 + j] += (xb & 0xffffffffU) * (xb >> 32);
      }
    }
    c += (unsigned)m;
    n -= m;
    if (c == STRIPES_PER_BLOCK) {
      for (int j = 0; j < 16; j++) {
        uint64_t v = acc[j];
        v ^= v >> 47;
        v ^= le64((j < 8 ? a : b) + SCRAMBLE_AT + 8 * (j & 7));
        acc[j] = v * P32_1;
      }
      c = 0;
    }
  }
  *count = c;
}

#ifdef HAVE_X86_KERNELS
/*
 * The vector kernels: per 64-bit lane, acc += (x & 0xffffffff) * (x >> 32) with x = data ^
 * secret (one _mul_epu32 of x and x shifted down by 32), and acc += the neighbouring lane's
 * data (a 32-bit shuffle swaps lane pairs). That second sum is the same for both seeds and
 * linear, so AVX2 and AVX-512 keep it once, unswapped (sum), and add it to both sets only
 * before a scramble and on the way out: fewer instructions per stripe than two passes over
 * the data. SSE2 has too few registers for that and adds it at each stripe. The scramble
 * multiplies by a 32-bit prime as two 32x32 products, the high one shifted up.
 */
#define SWAP_LANES _MM_SHUFFLE(1, 0, 3, 2)
#define HIGH_DOWN _MM_SHUFFLE(0, 3, 0, 1)

/* GCC at -O2 keeps a loop over a small array of vectors as a loop over memory: unroll it. */
#define UNROLLED _Pragma("GCC unroll 8")

static inline __m128i fold128(__m128i acc, __m128i x) { return _mm_add_epi64(acc, _mm_mul_epu32(x, _mm_shuffle_epi32(x, HIGH_DOWN))); }

static inline __m128i scramble128(__m128i v, const uint8_t *k) {
  const __m128i prime = _mm_set1_epi32((int)P32_1);
  __m128i x = _mm_xor_si128(_mm_xor_si128(v, _mm_srli_epi64(v, 47)), _mm_loadu_si128((const __m128i *)k));
  return _mm_add_epi64(_mm_mul_epu32(x, prime), _mm_slli_epi64(_mm_mul_epu32(_mm_srli_epi64(x, 32), prime), 32));
}

/* SSE2 has 16 registers: the eight accumulators take the neighbour's data at each stripe. */
static void kernel_sse2(uint64_t acc[16], unsigned *count, const uint8_t *p, size_t n, const uint8_t *a, const uint8_t *b) {
  __m128i va[4], vb[4];
  UNROLLED for (int j = 0; j < 4; j++) {
    va[j] = _mm_loadu_si128((const __m128i *)(acc + 2 * j));
    vb[j] = _mm_loadu_si128((const __m128i *)(acc + 8 + 2 * j));
  }
  unsigned c = *count;
  while (n > 0) {
    size_t m = STRIPES_PER_BLOCK - c < n ? STRIPES_PER_BLOCK - c : n;
    const uint8_t *ka = a + 8 * c, *kb = b + 8 * c;
    for (size_t i = 0; i < m; i++, p += STRIPE, ka += 8, kb += 8) {
      UNROLLED for (int j = 0; j < 4; j++) {
        __m128i d = _mm_loadu_si128((const __m128i *)(p + 16 * j));
        __m128i swapped = _mm_shuffle_epi32(d, SWAP_LANES);
        va[j] = fold128(_mm_add_epi64(va[j], swapped), _mm_xor_si128(d, _mm_loadu_si128((const __m128i *)(ka + 16 * j))));
        vb[j] = fold128(_mm_add_epi64(vb[j], swapped), _mm_xor_si128(d, _mm_loadu_si128((const __m128i *)(kb + 16 * j))));
      }
    }
    c += (unsigned)m;
    n -= m;
    if (c == STRIPES_PER_BLOCK) {
      UNROLLED for (int j = 0; j < 4; j++) {
        va[j] = scramble128(va[j], a + SCRAMBLE_AT + 16 * j);
        vb[j] = scramble128(vb[j], b + SCRAMBLE_AT + 16 * j);
      }
      c = 0;
    }
  }
  *count = c;
  UNROLLED for (int j = 0; j < 4; j++) {
    _mm_storeu_si128((__m128i *)(acc + 2 * j), va[j]);
    _mm_storeu_si128((__m128i *)(acc + 8 + 2 * j), vb[j]);
  }
}

__attribute__((target("avx2"))) static inline __m256i fold256(__m256i acc, __m256i x) {
  return _mm256_add_epi64(acc, _mm256_mul_epu32(x, _mm256_shuffle_epi32(x, HIGH_DOWN)));
}

__attribute__((target("avx2"))) static inline __m256i scramble256(__m256i v, const uint8_t *k) {
  const __m256i prime = _mm256_set1_epi32((int)P32_1);
  __m256i x = _mm256_xor_si256(_mm256_xor_si256(v, _mm256_srli_epi64(v, 47)), _mm256_loadu_si256((const __m256i *)k));
  return _mm256_add_epi64(_mm256_mul_epu32(x, prime), _mm256_slli_epi64(_mm256_mul_epu32(_mm256_srli_epi64(x, 32), prime), 32));
}

__attribute__((target("avx2"))) static void kernel_avx2(uint64_t acc[16], unsigned *count, const uint8_t *p, size_t n,
                                                         const uint8_t *a, const uint8_t *b) {
  __m256i va[2], vb[2], sum[2];
  UNROLLED for (int j = 0; j < 2; j++) {
    va[j] = _mm256_loadu_si256((const __m256i *)(acc + 4 * j));
    vb[j] = _mm256_loadu_si256((const __m256i *)(acc + 8 + 4 * j));
    sum[j] = _mm256_setzero_si256();
  }
  unsigned c = *count;
  for (;;) {
    size_t m = STRIPES_PER_BLOCK - c < n ? STRIPES_PER_BLOCK - c : n;
    const uint8_t *ka = a + 8 * c, *kb = b + 8 * c;
    for (size_t i = 0; i < m; i++, p += STRIPE, ka += 8, kb += 8) {
      UNROLLED for (int j = 0; j < 2; j++) {
        __m256i d = _mm256_loadu_si256((const __m256i *)(p + 32 * j));
        sum[j] = _mm256_add_epi64(sum[j], d);
        va[j] = fold256(va[j], _mm256_xor_si256(d, _mm256_loadu_si256((const __m256i *)(ka + 32 * j))));
        vb[j] = fold256(vb[j], _mm256_xor_si256(d, _mm256_loadu_si256((const __m256i *)(kb + 32 * j))));
      }
    }
    c += (unsigned)m;
    n -= m;
    UNROLLED for (int j = 0; j < 2; j++) {
      __m256i swapped = _mm256_shuffle_epi32(sum[j], SWAP_LANES);
      va[j] = _mm256_add_epi64(va[j], swapped);
      vb[j] = _mm256_add_epi64(vb[j], swapped);
      sum[j] = _mm256_setzero_si256();
    }
    if (c < STRIPES_PER_BLOCK) break;
    UNROLLED for (int j = 0; j < 2; j++) {
      va[j] = scramble256(va[j], a + SCRAMBLE_AT + 32 * j);
      vb[j] = scramble256(vb[j], b + SCRAMBLE_AT + 32 * j);
    }
    c = 0;
    if (n == 0) break;
  }
  *count = c;
  UNROLLED for (int j = 0; j < 2; j++) {
    _mm256_storeu_si256((__m256i *)(acc + 4 * j), va[j]);
    _mm256_storeu_si256((__m256i *)(acc + 8 + 4 * j), vb[j]);
  }
}

__attribute__((target("avx512f"))) static void kernel_avx512(uint64_t acc[16], unsigned *count, const uint8_t *p, size_t n,
                                                              const uint8_t *a, const uint8_t *b) {
  __m512i va = _mm512_loadu_si512((const void *)acc), vb = _mm512_loadu_si512((const void *)(acc + 8));
  __m512i sum = _mm512_setzero_si512();
  unsigned c = *count;
  for (;;) {
    size_t m = STRIPES_PER_BLOCK - c < n ? STRIPES_PER_BLOCK - c : n;
    const uint8_t *ka = a + 8 * c, *kb = b + 8 * c;
    for (size_t i = 0; i < m; i++, p += STRIPE, ka += 8, kb += 8) {
      __m512i d = _mm512_loadu_si512((const void *)p);
      __m512i xa = _mm512_xor_si512(d, _mm512_loadu_si512((const void *)ka));
      __m512i xb = _mm512_xor_si512(d, _mm512_loadu_si512((const void *)kb));
      sum = _mm512_add_epi64(sum, d);
      va = _mm512_add_epi64(va, _mm512_mul_epu32(xa, _mm512_shuffle_epi32(xa, (_MM_PERM_ENUM)HIGH_DOWN)));
      vb = _mm512_add_epi64(vb, _mm512_mul_epu32(xb, _mm512_shuffle_epi32(xb, (_MM_PERM_ENUM)HIGH_DOWN)));
    }
    c += (unsigned)m;
    n -= m;
    __m512i swapped = _mm512_shuffle_epi32(sum, (_MM_PERM_ENUM)SWAP_LANES);
    va = _mm512_add_epi64(va, swapped);
    vb = _mm512_add_epi64(vb, swapped);
    sum = _mm512_setzero_si512();
    if (c < STRIPES_PER_BLOCK) break;
    const __m512i prime = _mm512_set1_epi32((int)P32_1);
    for (int j = 0; j < 2; j++) {
      __m512i *v = j == 0 ? &va : &vb;
      __m512i k = _mm512_loadu_si512((const void *)((j == 0 ? a : b) + SCRAMBLE_AT));
      __m512i x = _mm512_xor_si512(_mm512_xor_si512(*v, _mm512_srli_epi64(*v, 47)), k);
      __m512i lo = _mm512_mul_epu32(x, prime), hi = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), prime);
      *v = _mm512_add_epi64(lo, _mm512_slli_epi64(hi, 32));
    }
    c = 0;
    if (n == 0) break;
  }
  *count = c;
  _mm512_storeu_si512((void *)acc, va);
  _mm512_storeu_si512((void *)(acc + 8), vb);
}
#endif

/* ---------------------------------------------------------------- choosing a kernel */

static const struct {
  const char *name;
  kernel_fn *fn;
} kernels[] = {
    {"scalar", kernel_scalar},
#ifdef HAVE_X86_KERNELS
    {"sse2", kernel_sse2},
    {"avx2", kernel_avx2},
    {"avx512", kernel_avx512},
#endif
};
#define KERNELS ((int)(sizeof kernels / sizeof kernels[0]))

/* The best kernel this CPU runs (an index into kernels). */
static int best_kernel(void) {
#ifdef HAVE_X86_KERNELS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return 3;
  if (__builtin_cpu_supports("avx2")) return 2;
  return 1;
#else
  return 0;
#endif
}

/* -1 until the first long input; written with the same value by whichever thread gets there. */
static int chosen = -1;

static kernel_fn *kernel(void) {
  int k = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
  if (k < 0) {
    k = best_kernel();
    __atomic_store_n(&chosen, k, __ATOMIC_RELAXED);
  }
  return kernels[k].fn;
}

const char *content_hash_kernel(void) {
  kernel();
  return kernels[__atomic_load_n(&chosen, __ATOMIC_RELAXED)].name;
}

int content_hash_use_kernel(const char *name) {
  int best = best_kernel();
  for (int k = 0; k < KERNELS && k <= best; k++) {
    if (strcmp(kernels[k].name, name) == 0) {
      __atomic_store_n(&chosen, k, __ATOMIC_RELAXED);
      return 1;
    }
  }
  return 0;
}

/* ---------------------------------------------------------------- inputs of more than 240 bytes */

/* The secret of seed B: the default secret, each 16 bytes as two 64-bit words +seed, -seed. */
static void secret_b(uint8_t out[SECRET_BYTES]) {
  for (int i = 0; i < SECRET_BYTES; i += 16) {
    put_le64(out + i, le64(k_secret + i) + SEED_B);
    put_le64(out + i + 8, le64(k_secret + i + 8) - SEED_B);
  }
}

static void acc_init(uint64_t acc[16]) {
  static const uint64_t start[8] = {P32_3, P64_1, P64_2, P64_3, P64_4, P32_2, P64_5, P32_1};
  memcpy(acc, start, sizeof start);
  memcpy(acc + 8, start, sizeof start);
}

static uint64_t merge(const uint64_t acc[8], const uint8_t *secret, uint64_t len) {
  uint64_t h = len * P64_1;
  for (int i = 0; i < 4; i++) h += mul_fold(acc[2 * i] ^ le64(secret + 16 * i), acc[2 * i + 1] ^ le64(secret + 16 * i + 8));
  return mix_final(h);
}

/* Folds the last stripe (the input's last 64 bytes) and merges: both seeds' hashes of len bytes. */
static void finish(kernel_fn *run, uint64_t acc[16], const uint8_t *last, const uint8_t *sb, uint64_t len, uint64_t h[2]) {
  unsigned none = 0;
  run(acc, &none, last, 1, k_secret + LAST_STRIPE_AT, sb + LAST_STRIPE_AT);
  h[0] = merge(acc, k_secret + MERGE_AT, len);
  h[1] = merge(acc + 8, sb + MERGE_AT, len);
}

static void put_be64(uint8_t *out, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    out[i] = (uint8_t)v;
    v >>= 8;
  }
}

/* The 16-byte digest: the two seeds' hashes, each big-endian. */
static void put_digest(uint8_t out[16], const uint64_t h[2]) {
  put_be64(out, h[0]);
  put_be64(out + 8, h[1]);
}

/* An input of at most SHORT_MAX bytes takes the short paths: digest it and say so (1); 0 for a longer one. */
static int short_digest(const uint8_t *in, uint64_t len, uint8_t out[16]) {
  if (len > SHORT_MAX) return 0;
  const uint64_t h[2] = {hash_short(in, (size_t)len, 0), hash_short(in, (size_t)len, SEED_B)};
  put_digest(out, h);
  return 1;
}

void content_hash_of(const uint8_t *data, size_t len, uint8_t out[16]) {
  if (short_digest(data, len, out)) return;
  kernel_fn *run = kernel();
  uint8_t sb[SECRET_BYTES];
  uint64_t acc[16], h[2];
  unsigned count = 0;
  secret_b(sb);
  acc_init(acc);
  run(acc, &count, data, (len - 1) / STRIPE, k_secret, sb); /* every stripe some byte follows */
  finish(run, acc, data + len - STRIPE, sb, len, h);
  put_digest(out, h);
}

/* ---------------------------------------------------------------- streaming */

#define STATE_TAG 0x3178783379727266ULL /* "ferry3xx" little-endian, then a version: 1 */

/*
 * The state: this header, then the buffer. Invariants (content_hash_valid): buffered <=
 * BUF_BYTES; total - buffered bytes were folded, a whole number of stripes, count of them
 * in the current block; while total <= BUF_BYTES nothing is folded (the buffer holds the
 * input), after that at least one byte waits, and the buffer's last 64 bytes hold the last
 * folded stripe wherever the waiting bytes do not reach.
 */
typedef struct {
  uint64_t tag;
  uint64_t total;
  uint32_t buffered;
  uint32_t count;
  uint64_t acc[16];
} header_t;

size_t content_hash_state_bytes(void) { return sizeof(header_t) + BUF_BYTES; }

static void load(const uint8_t *state, header_t *h) { memcpy(h, state, sizeof *h); }
static void save(uint8_t *state, const header_t *h) { memcpy(state, h, sizeof *h); }

void content_hash_init(uint8_t *state) {
  header_t h = {.tag = STATE_TAG, .total = 0, .buffered = 0, .count = 0};
  acc_init(h.acc);
  save(state, &h);
  memset(state + sizeof h, 0, BUF_BYTES);
}

int content_hash_valid(const uint8_t *state) {
  header_t h;
  load(state, &h);
  if (h.tag != STATE_TAG || h.buffered > BUF_BYTES || h.count >= STRIPES_PER_BLOCK || h.total < h.buffered) return 0;
  uint64_t folded = h.total - h.buffered;
  if (h.total <= BUF_BYTES ? folded != 0 : h.buffered == 0) return 0;
  return folded % STRIPE == 0 && (folded / STRIPE) % STRIPES_PER_BLOCK == h.count;
}

void content_hash_update(uint8_t *state, const uint8_t *data, size_t len) {
  header_t h;
  uint8_t *buf = state + sizeof h;
  if (len == 0) return; /* data may be NULL then */
  load(state, &h);
  h.total += len;
  if (len <= BUF_BYTES - h.buffered) { /* still fits: wait for more */
    memcpy(buf + h.buffered, data, len);
    h.buffered += (uint32_t)len;
    save(state, &h);
    return;
  }
  /* More than the buffer holds: whatever is buffered now has bytes after it. */
  kernel_fn *run = kernel();
  uint8_t sb[SECRET_BYTES];
  secret_b(sb);
  if (h.buffered > 0) {
    size_t fill = BUF_BYTES - h.buffered;
    memcpy(buf + h.buffered, data, fill);
    data += fill;
    len -= fill;
    run(h.acc, &h.count, buf, BUF_BYTES / STRIPE, k_secret, sb);
    h.buffered = 0;
  }
  if (len > BUF_BYTES) { /* fold straight from the input, all but the last 1-64 bytes */
    size_t n = (len - 1) / STRIPE;
    run(h.acc, &h.count, data, n, k_secret, sb);
    data += n * STRIPE;
    len -= n * STRIPE;
    memcpy(buf + BUF_BYTES - STRIPE, data - STRIPE, STRIPE);
  }
  memcpy(buf, data, len); /* 1..BUF_BYTES bytes; below 64 they leave the last stripe alone */
  h.buffered = (uint32_t)len;
  save(state, &h);
}

void content_hash_digest(const uint8_t *state, uint8_t out[16]) {
  header_t h;
  const uint8_t *buf = state + sizeof h;
  load(state, &h);
  if (short_digest(buf, h.total, out)) return; /* the buffer holds the whole input */
  kernel_fn *run = kernel();
  uint8_t sb[SECRET_BYTES], last[STRIPE];
  uint64_t r[2];
  secret_b(sb);
  const uint8_t *lastp;
  if (h.buffered >= STRIPE) {
    run(h.acc, &h.count, buf, (h.buffered - 1) / STRIPE, k_secret, sb);
    lastp = buf + h.buffered - STRIPE;
  } else { /* the last stripe begins in the one folded before */
    size_t before = STRIPE - h.buffered;
    memcpy(last, buf + BUF_BYTES - before, before);
    memcpy(last + before, buf, h.buffered);
    lastp = last;
  }
  finish(run, h.acc, lastp, sb, h.total, r);
  put_digest(out, r);
}
