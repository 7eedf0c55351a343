/*
 * records.c (part of ferry_native): seal and open many TLS 1.3 records per call.
 *
 * The record format is RFC 8446 §5.2 with AES-128-GCM, exactly as src/secure/record-layer.ts
 * (the TypeScript fallback, and the reference this file is cross-tested against) and the
 * kernel's kTLS write it:
 *
 *   record     = 0x17 0x03 0x03 || u16 length || AEAD(content || 0x17) || tag[16]
 *   nonce      = iv XOR (0^32 || seq as u64 big-endian)                  (§5.3)
 *   AAD        = the 5-byte header                                      (§5.2)
 *
 * Why here: node:crypto needs a new cipher object per record (GCM's nonce changes and a
 * Cipher cannot be re-initialised), which costs about as much as encrypting 16 KiB. With
 * OpenSSL's EVP API one EVP_CIPHER_CTX per direction is created once (key schedule done
 * once) and each record only resets the IV: EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce).
 * Records are written into, and opened inside, buffers the caller owns.
 *
 * Which OpenSSL: Node's own. The node binary exports OpenSSL's EVP_* symbols and ships
 * their headers under <prefix>/include/node/openssl. We do not link against them: they are
 * looked up with dlsym at load time, so an addon built here still loads (with its kTLS
 * functions) under a node that does not export them, and then says why records are not
 * native. Only AES-128-GCM, only the calls below.
 *
 * Exports (all checked; a misuse throws a TypeError/RangeError, never crashes):
 *   recordsAvailable            true, or a string saying why the functions below are absent
 *   aeadNew(key16, iv12, open)  a context for one direction (open=false: seal, true: open)
 *   sealRecords(ctx, seq, parts, out, outOff) -> bytes written
 *       seals the concatenation of `parts` (Uint8Arrays) as full 2^14-byte records and a
 *       last shorter one, record i with sequence number seq+i, into out[outOff..].
 *   openRecords(ctx, seq, buf, off, end, maxRecords, res) -> records opened
 *       opens the complete records in buf[off..end) in place, record i under seq+i, and
 *       stops at the first incomplete record, after maxRecords, or at the first failure.
 *       res (Int32Array): res[0] = offset after the last record opened, res[1] = status
 *       (0 ok, 1 malformed header, 2 length out of range [res[2] = length], 3 failed
 *       authentication, 4 wrong content type [res[2] = type], 5 no content type, 6 content
 *       over 2^14), then for record i: res[4+2i] = offset of its content, res[5+2i] = length.
 *       A record that fails authentication is left as it arrived (its ciphertext is restored),
 *       so that the caller may open it again under other keys (a key update, RFC 8446 §4.6.3).
 *   openRecords(ctx, seq, buf, off, end, maxRecords, res, out, outOff, outStop) -> records opened
 *       the same, but each record is decrypted into `out` instead of in place, its content
 *       right after the previous one's (from outOff on: one contiguous run of content, the
 *       caller's frame being assembled), while the content written so far ends before
 *       outStop; a record whose plaintext (content, type byte, padding) would not fit in
 *       out[q..out.length) is not opened, and then res[3] = 1. Offsets of contents in res
 *       are then offsets in `out`. `buf` is never written; `out` holds garbage past the
 *       contents reported (after a failure too).
 *
 * seq is passed as a double: exact up to 2^53, and the TypeScript side never goes past 2^24
 * records under one key.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ferry.h"

#define HDR 5
#define TAG 16
#define MAX_PLAIN 16384
#define MAX_CIPHER (16384 + 256)
#define CT_APPLICATION_DATA 0x17

enum { ST_OK = 0, ST_HEADER = 1, ST_LENGTH = 2, ST_AUTH = 3, ST_TYPE = 4, ST_NO_TYPE = 5, ST_TOO_LONG = 6 };

#ifndef FERRY_NO_OPENSSL
#include <openssl/evp.h>

/* Function pointers with the exact prototypes of Node's OpenSSL headers. */
#define FERRY_EVP_FUNCS(X)         \
  X(EVP_aes_128_gcm)               \
  X(EVP_CIPHER_CTX_new)            \
  X(EVP_CIPHER_CTX_free)           \
  X(EVP_CIPHER_CTX_ctrl)           \
  X(EVP_EncryptInit_ex)            \
  X(EVP_EncryptUpdate)             \
  X(EVP_EncryptFinal_ex)           \
  X(EVP_DecryptInit_ex)            \
  X(EVP_DecryptUpdate)             \
  X(EVP_DecryptFinal_ex)

#define DECLARE_PTR(name) static __typeof__(name) *p_##name;
FERRY_EVP_FUNCS(DECLARE_PTR)

static const char *missing_symbol = NULL;

static int resolve_evp(void) {
#define RESOLVE(name)                                              \
  p_##name = (__typeof__(name) *)dlsym(RTLD_DEFAULT, #name);      \
  if (p_##name == NULL) {                                          \
    missing_symbol = #name;                                        \
    return 0;                                                      \
  }
  FERRY_EVP_FUNCS(RESOLVE)
#undef RESOLVE
  return 1;
}

typedef struct {
  EVP_CIPHER_CTX *ctx;
  unsigned char iv[12];
  int open;
} aead_t;

static const napi_type_tag AEAD_TAG = {0x6665727279616561ULL, 0x64313238676d6331ULL};

static void aead_finalize(napi_env env, void *data, void *hint) {
  aead_t *a = (aead_t *)data;
  (void)env;
  (void)hint;
  if (a == NULL) return;
  if (a->ctx != NULL) p_EVP_CIPHER_CTX_free(a->ctx); /* frees (and cleanses) the key schedule */
  explicit_bzero(a, sizeof(*a));
  free(a);
}

/* A Uint8Array (or Buffer) argument's bytes. */
static int get_u8(napi_env env, napi_value v, unsigned char **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  if (napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok || type != napi_uint8_array) return 0;
  *data = (unsigned char *)p;
  return 1;
}

static int get_i32_array(napi_env env, napi_value v, int32_t **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return 0;
  if (napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok || type != napi_int32_array) return 0;
  *data = (int32_t *)p;
  return 1;
}

/* A non-negative integer argument that fits a double exactly (offsets, counts, seq). */
static int get_count(napi_env env, napi_value v, double max, uint64_t *out) {
  double d;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= 0 && d <= max) || d != (double)(uint64_t)d) return 0;
  *out = (uint64_t)d;
  return 1;
}

static aead_t *get_aead(napi_env env, napi_value v, int open) {
  bool ok = false;
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_check_object_type_tag(env, v, &AEAD_TAG, &ok) != napi_ok || !ok) return NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) return NULL;
  if (((aead_t *)data)->open != open) return NULL;
  return (aead_t *)data;
}

/* RFC 8446 §5.3: the 64-bit sequence number, big-endian, XORed into the last 8 bytes of the IV. */
static inline void make_nonce(unsigned char nonce[12], const unsigned char iv[12], uint64_t seq) {
  memcpy(nonce, iv, 12);
  for (int i = 0; i < 8; i++) nonce[11 - i] ^= (unsigned char)(seq >> (8 * i));
}

static inline void write_header(unsigned char *h, size_t ciphertext_len) {
  h[0] = CT_APPLICATION_DATA;
  h[1] = 0x03;
  h[2] = 0x03;
  h[3] = (unsigned char)(ciphertext_len >> 8);
  h[4] = (unsigned char)ciphertext_len;
}

/* aeadNew(key[16], iv[12], open) */
static napi_value aead_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], out;
  unsigned char *key, *iv;
  size_t klen, ivlen;
  bool open = false;
  aead_t *a;
  int ok;
  FERRY_CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !get_u8(env, argv[0], &key, &klen) || klen != 16 || !get_u8(env, argv[1], &iv, &ivlen) || ivlen != 12 ||
      napi_get_value_bool(env, argv[2], &open) != napi_ok) {
    napi_throw_type_error(env, NULL, "aeadNew(key[16], iv[12], open): bad arguments");
    return NULL;
  }
  a = (aead_t *)calloc(1, sizeof(*a));
  if (a == NULL || (a->ctx = p_EVP_CIPHER_CTX_new()) == NULL) {
    free(a);
    napi_throw_error(env, "FERRY_E_INTERNAL", "aeadNew: out of memory");
    return NULL;
  }
  memcpy(a->iv, iv, 12);
  a->open = open ? 1 : 0;
  /* Key schedule once; the default GCM IV length is 12 bytes. Each record only sets its nonce. */
  ok = open ? p_EVP_DecryptInit_ex(a->ctx, p_EVP_aes_128_gcm(), NULL, key, NULL)
            : p_EVP_EncryptInit_ex(a->ctx, p_EVP_aes_128_gcm(), NULL, key, NULL);
  if (ok != 1) {
    aead_finalize(env, a, NULL);
    napi_throw_error(env, "FERRY_E_INTERNAL", "aeadNew: OpenSSL refused the AES-128-GCM key");
    return NULL;
  }
  if (napi_create_external(env, a, aead_finalize, NULL, &out) != napi_ok) {
    aead_finalize(env, a, NULL);
    napi_throw_error(env, "FERRY_E_INTERNAL", "aeadNew: napi_create_external failed");
    return NULL;
  }
  FERRY_CHECK(napi_type_tag_object(env, out, &AEAD_TAG));
  return out;
}

#define MAX_PARTS 65536

/* sealRecords(ctx, seq, parts, out, outOff) -> bytes written */
static napi_value seal_records(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  aead_t *a;
  uint64_t seq, out_off;
  uint32_t nparts = 0;
  bool is_array = false;
  unsigned char *out;
  size_t out_len, total = 0, nrec, need;
  unsigned char **pdata = NULL;
  size_t *plen = NULL;
  size_t pi = 0, po = 0, o;
  static const unsigned char type_byte = CT_APPLICATION_DATA;
  const char *fail = NULL;

  FERRY_CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5 || (a = get_aead(env, argv[0], 0)) == NULL || !get_count(env, argv[1], 9007199254740991.0, &seq) ||
      napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[2], &nparts) != napi_ok ||
      !get_u8(env, argv[3], &out, &out_len) || !get_count(env, argv[4], (double)out_len, &out_off)) {
    napi_throw_type_error(env, NULL, "sealRecords(sealCtx, seq, parts[], out, outOff): bad arguments");
    return NULL;
  }
  if (nparts > MAX_PARTS) {
    napi_throw_range_error(env, NULL, "sealRecords: too many parts");
    return NULL;
  }
  if (nparts > 0) {
    pdata = (unsigned char **)malloc(nparts * sizeof(*pdata));
    plen = (size_t *)malloc(nparts * sizeof(*plen));
    if (pdata == NULL || plen == NULL) {
      free(pdata);
      free(plen);
      napi_throw_error(env, "FERRY_E_INTERNAL", "sealRecords: out of memory");
      return NULL;
    }
  }
  for (uint32_t i = 0; i < nparts; i++) {
    napi_value el;
    if (napi_get_element(env, argv[2], i, &el) != napi_ok || !get_u8(env, el, &pdata[i], &plen[i])) {
      fail = "sealRecords: every part must be a Uint8Array";
      goto type_error;
    }
    total += plen[i];
  }
  nrec = (total + MAX_PLAIN - 1) / MAX_PLAIN;
  need = total + nrec * (HDR + 1 + TAG);
  if (need > out_len - out_off) {
    free(pdata);
    free(plen);
    napi_throw_range_error(env, NULL, "sealRecords: the output buffer is too small");
    return NULL;
  }

  o = (size_t)out_off;
  for (size_t r = 0; r < nrec; r++) {
    size_t len = total - r * MAX_PLAIN < MAX_PLAIN ? total - r * MAX_PLAIN : MAX_PLAIN;
    unsigned char nonce[12];
    unsigned char *h = out + o;
    int outl = 0;
    write_header(h, len + 1 + TAG);
    make_nonce(nonce, a->iv, seq + r);
    o += HDR;
    if (p_EVP_EncryptInit_ex(a->ctx, NULL, NULL, NULL, nonce) != 1 || p_EVP_EncryptUpdate(a->ctx, NULL, &outl, h, HDR) != 1) goto ssl_error;
    while (len > 0) {
      size_t take = plen[pi] - po < len ? plen[pi] - po : len;
      if (take > 0) {
        if (p_EVP_EncryptUpdate(a->ctx, out + o, &outl, pdata[pi] + po, (int)take) != 1) goto ssl_error;
        o += (size_t)outl;
      }
      len -= take;
      po += take;
      if (po == plen[pi]) {
        pi++;
        po = 0;
      }
    }
    while (pi < nparts && plen[pi] == 0) pi++;
    if (p_EVP_EncryptUpdate(a->ctx, out + o, &outl, &type_byte, 1) != 1) goto ssl_error;
    o += (size_t)outl;
    if (p_EVP_EncryptFinal_ex(a->ctx, out + o, &outl) != 1) goto ssl_error;
    o += (size_t)outl;
    if (p_EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_GCM_GET_TAG, TAG, out + o) != 1) goto ssl_error;
    o += TAG;
  }
  free(pdata);
  free(plen);
  FERRY_CHECK(napi_create_double(env, (double)(o - (size_t)out_off), &result));
  return result;

ssl_error:
  free(pdata);
  free(plen);
  napi_throw_error(env, "FERRY_E_INTERNAL", "sealRecords: OpenSSL failed");
  return NULL;
type_error:
  free(pdata);
  free(plen);
  napi_throw_type_error(env, NULL, fail);
  return NULL;
}

/* openRecords(ctx, seq, buf, off, end, maxRecords, res[, out, outOff, outStop]) -> records opened */
static napi_value open_records(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10], result;
  aead_t *a;
  uint64_t seq, off, end, max, out_off = 0, out_stop = 0;
  unsigned char *buf, *out = NULL;
  size_t buf_len, res_len, out_len = 0;
  int32_t *res;
  size_t cap, n = 0, p, q;
  int status = ST_OK;
  int32_t detail = 0, no_room = 0;

  FERRY_CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7 || (a = get_aead(env, argv[0], 1)) == NULL || !get_count(env, argv[1], 9007199254740991.0, &seq) ||
      !get_u8(env, argv[2], &buf, &buf_len) || buf_len > INT32_MAX || !get_count(env, argv[4], (double)buf_len, &end) ||
      !get_count(env, argv[3], (double)end, &off) || !get_count(env, argv[5], 4294967295.0, &max) ||
      !get_i32_array(env, argv[6], &res, &res_len) || res_len < 4 ||
      (argc >= 10 && (!get_u8(env, argv[7], &out, &out_len) || out_len > INT32_MAX || !get_count(env, argv[8], (double)out_len, &out_off) ||
                      !get_count(env, argv[9], (double)out_len, &out_stop)))) {
    napi_throw_type_error(env, NULL, "openRecords(openCtx, seq, buf, off, end, maxRecords, res: Int32Array[, out, outOff, outStop]): bad arguments");
    return NULL;
  }
  cap = (res_len - 4) / 2;
  if (max < cap) cap = (size_t)max;
  p = (size_t)off;
  q = (size_t)out_off;
  while (n < cap && end - p >= HDR) {
    unsigned char *h = buf + p;
    size_t len = ((size_t)h[3] << 8) | h[4];
    size_t ct_len, i;
    unsigned char nonce[12];
    unsigned char *ct, *pt;
    int outl = 0;
    if (out != NULL && q >= out_stop) break;
    if (h[0] != CT_APPLICATION_DATA || h[1] != 0x03 || h[2] != 0x03) {
      status = ST_HEADER;
      break;
    }
    if (len > MAX_CIPHER || len < 1 + TAG) {
      status = ST_LENGTH;
      detail = (int32_t)len;
      break;
    }
    if (end - p < HDR + len) break; /* incomplete: wait for more bytes */
    ct = h + HDR;
    ct_len = len - TAG;
    if (out != NULL && ct_len > out_len - q) {
      no_room = 1;
      break;
    }
    pt = out != NULL ? out + q : ct;
    make_nonce(nonce, a->iv, seq + n);
    if (p_EVP_DecryptInit_ex(a->ctx, NULL, NULL, NULL, nonce) != 1 || p_EVP_DecryptUpdate(a->ctx, NULL, &outl, h, HDR) != 1 ||
        p_EVP_DecryptUpdate(a->ctx, pt, &outl, ct, (int)ct_len) != 1 ||
        p_EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_GCM_SET_TAG, TAG, ct + ct_len) != 1 ||
        p_EVP_DecryptFinal_ex(a->ctx, pt + ct_len, &outl) != 1) {
      /* In place, undo the decryption: GCM's CTR keystream XORed twice gives the ciphertext back. */
      if (pt == ct && p_EVP_DecryptInit_ex(a->ctx, NULL, NULL, NULL, nonce) == 1) p_EVP_DecryptUpdate(a->ctx, ct, &outl, ct, (int)ct_len);
      status = ST_AUTH;
      break;
    }
    /* TLSInnerPlaintext (§5.4): strip zero padding; the last non-zero byte is the type. */
    i = ct_len;
    while (i > 0 && pt[i - 1] == 0) i--;
    if (i == 0) {
      status = ST_NO_TYPE;
      break;
    }
    if (pt[i - 1] != CT_APPLICATION_DATA) {
      status = ST_TYPE;
      detail = pt[i - 1];
      break;
    }
    if (i - 1 > MAX_PLAIN) {
      status = ST_TOO_LONG;
      break;
    }
    res[4 + 2 * n] = (int32_t)(pt - (out != NULL ? out : buf));
    res[5 + 2 * n] = (int32_t)(i - 1);
    n++;
    p += HDR + len;
    q += i - 1;
  }
  res[0] = (int32_t)p;
  res[1] = status;
  res[2] = detail;
  res[3] = no_room;
  FERRY_CHECK(napi_create_uint32(env, (uint32_t)n, &result));
  return result;
}

napi_status ferry_register_records(napi_env env, napi_value exports) {
  napi_value avail;
  napi_status s;
  if (!resolve_evp()) {
    char why[160];
    snprintf(why, sizeof(why), "this node does not export OpenSSL's %s", missing_symbol);
    s = napi_create_string_utf8(env, why, NAPI_AUTO_LENGTH, &avail);
    if (s != napi_ok) return s;
    return napi_set_named_property(env, exports, "recordsAvailable", avail);
  }
  {
    napi_property_descriptor props[] = {
        {"aeadNew", NULL, aead_new, NULL, NULL, NULL, napi_enumerable, NULL},
        {"sealRecords", NULL, seal_records, NULL, NULL, NULL, napi_enumerable, NULL},
        {"openRecords", NULL, open_records, NULL, NULL, NULL, napi_enumerable, NULL},
    };
    s = napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
    if (s != napi_ok) return s;
  }
  s = napi_get_boolean(env, true, &avail);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, exports, "recordsAvailable", avail);
}

#else /* FERRY_NO_OPENSSL: built without Node's OpenSSL headers */

napi_status ferry_register_records(napi_env env, napi_value exports) {
  napi_value avail;
  napi_status s = napi_create_string_utf8(env, "the addon was built without Node's OpenSSL headers", NAPI_AUTO_LENGTH, &avail);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, exports, "recordsAvailable", avail);
}

#endif
