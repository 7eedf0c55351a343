/*
 * ktls.c (part of ferry_native): the two setsockopt calls Node.js cannot make.
 *
 * Linux kTLS (Documentation/networking/tls.rst) moves the TLS record layer into the
 * kernel: after the handshake, userspace attaches the "tls" upper-layer protocol to a
 * connected TCP socket and hands it the traffic keys of one direction; from then on
 * plain write()/read() on the socket send and receive TLS records. Node has no API for
 * setsockopt, so this file exposes exactly what src/secure/ktls.ts needs and nothing
 * more:
 *
 *   setUlp(fd)                               -> 0 or errno   setsockopt(SOL_TCP, TCP_ULP, "tls")
 *   setCrypto(fd, dir, key, salt, iv, seq)   -> 0 or errno   setsockopt(SOL_TLS, TLS_TX|TLS_RX, ...)
 *   getUlp(fd)                               -> string       getsockopt(SOL_TCP, TCP_ULP) ("" if none)
 *
 * Errors are returned as errno values rather than thrown, so that the TypeScript side
 * builds the one FerryError (FERRY_E_KTLS) with a message naming the step and the
 * errno; argument checking (lengths, fd range) is done on both sides.
 *
 * The crypto_info layout is struct tls12_crypto_info_aes_gcm_128 from
 * include/uapi/linux/tls.h, with info.version = TLS_1_3_VERSION (0x0304): the name
 * says tls12 but the kernel uses the same struct for TLS 1.3 (since Linux 5.1). The
 * definitions are repeated below when <linux/tls.h> is missing so the addon builds
 * with only libc headers; their values are kernel ABI and cannot change.
 *
 * Build: plain C99, no -march flags (the qemu lab's TCG CPU has no AVX-512, and a
 * binary built with -march=native dies there). See scripts/build-native.mjs.
 * Registered on the addon's exports by ferry.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include "ferry.h"

#if defined(__has_include)
#if __has_include(<linux/tls.h>)
#include <linux/tls.h>
#endif
#endif

#ifndef TCP_ULP
#define TCP_ULP 31
#endif
#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TLS_TX
#define TLS_TX 1
#define TLS_RX 2
#endif
#ifndef TLS_1_3_VERSION
#define TLS_1_3_VERSION 0x0304
#endif
#ifndef TLS_CIPHER_AES_GCM_128
#define TLS_CIPHER_AES_GCM_128 51
#define TLS_CIPHER_AES_GCM_128_IV_SIZE 8
#define TLS_CIPHER_AES_GCM_128_KEY_SIZE 16
#define TLS_CIPHER_AES_GCM_128_SALT_SIZE 4
#define TLS_CIPHER_AES_GCM_128_REC_SEQ_SIZE 8
struct tls_crypto_info {
  uint16_t version;
  uint16_t cipher_type;
};
struct tls12_crypto_info_aes_gcm_128 {
  struct tls_crypto_info info;
  unsigned char iv[TLS_CIPHER_AES_GCM_128_IV_SIZE];
  unsigned char key[TLS_CIPHER_AES_GCM_128_KEY_SIZE];
  unsigned char salt[TLS_CIPHER_AES_GCM_128_SALT_SIZE];
  unsigned char rec_seq[TLS_CIPHER_AES_GCM_128_REC_SEQ_SIZE];
};
#endif

static napi_value make_int(napi_env env, int v) {
  napi_value out;
  if (napi_create_int32(env, v, &out) != napi_ok) return NULL;
  return out;
}

/* Reads argument i as a non-negative int32 fd; throws a TypeError otherwise. */
static int get_fd(napi_env env, napi_value v, int *fd) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return 0;
  if (napi_get_value_int32(env, v, fd) != napi_ok || *fd < 0) return 0;
  return 1;
}

/* Copies a Buffer argument of exactly `len` bytes into dst. */
static int get_bytes(napi_env env, napi_value v, unsigned char *dst, size_t len) {
  bool is_buf = false;
  void *data = NULL;
  size_t n = 0;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf) return 0;
  if (napi_get_buffer_info(env, v, &data, &n) != napi_ok || n != len) return 0;
  memcpy(dst, data, len);
  return 1;
}

static napi_value set_ulp(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int fd;
  FERRY_CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_fd(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "setUlp(fd): fd must be a non-negative integer");
    return NULL;
  }
  if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls")) != 0) return make_int(env, errno);
  return make_int(env, 0);
}

static napi_value get_ulp(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value out;
  int fd;
  char name[32];
  socklen_t len = sizeof(name) - 1;
  FERRY_CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_fd(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "getUlp(fd): fd must be a non-negative integer");
    return NULL;
  }
  memset(name, 0, sizeof(name));
  if (getsockopt(fd, SOL_TCP, TCP_ULP, name, &len) != 0) len = 0;
  name[len < sizeof(name) ? len : sizeof(name) - 1] = '\0';
  FERRY_CHECK(napi_create_string_utf8(env, name, strlen(name), &out));
  return out;
}

/* setCrypto(fd, direction 1=TX 2=RX, key[16], salt[4], iv[8], recSeq[8]) */
static napi_value set_crypto(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  int fd, dir;
  struct tls12_crypto_info_aes_gcm_128 ci;
  int rc;
  FERRY_CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  memset(&ci, 0, sizeof(ci));
  if (argc < 6 || !get_fd(env, argv[0], &fd) || napi_get_value_int32(env, argv[1], &dir) != napi_ok ||
      (dir != TLS_TX && dir != TLS_RX) ||
      !get_bytes(env, argv[2], ci.key, sizeof(ci.key)) ||
      !get_bytes(env, argv[3], ci.salt, sizeof(ci.salt)) ||
      !get_bytes(env, argv[4], ci.iv, sizeof(ci.iv)) ||
      !get_bytes(env, argv[5], ci.rec_seq, sizeof(ci.rec_seq))) {
    napi_throw_type_error(env, NULL,
                          "setCrypto(fd, dir, key[16], salt[4], iv[8], recSeq[8]): bad arguments");
    return NULL;
  }
  ci.info.version = TLS_1_3_VERSION;
  ci.info.cipher_type = TLS_CIPHER_AES_GCM_128;
  rc = setsockopt(fd, SOL_TLS, dir, &ci, sizeof(ci));
  rc = rc == 0 ? 0 : errno;
  /* The key was on our stack; do not leave it there. */
  explicit_bzero(&ci, sizeof(ci));
  return make_int(env, rc);
}

napi_status ferry_register_ktls(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"setUlp", NULL, set_ulp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getUlp", NULL, get_ulp, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setCrypto", NULL, set_crypto, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
