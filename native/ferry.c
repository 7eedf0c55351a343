/*
 * ferry_native: ferry's data plane as one N-API addon (build: scripts/build-native.mjs).
 *
 * It executes batches and decides nothing: every protocol and safety decision stays in
 * TypeScript, and every function here has a TypeScript fallback with the same results
 * (src/native/index.ts loads this file, or not, and says which paths are in use).
 *
 *   ktls.c     the setsockopt calls for kernel TLS offload
 *   records.c  sealing and opening many TLS 1.3 records per call with Node's own OpenSSL
 *   fs-batch.c batches of safe local file copies on libuv's pool threads
 *   net-batch.c the network transfer's batches: source reads, small-file publishing, the content hash
 *   meta.c     nanosecond times, SEEK_DATA/SEEK_HOLE extents, extended attributes
 *   fs-walk.c  a directory listed and lstat'ed in one call, relative to its fd
 */
#include "ferry.h"
#include "fs-batch.h"
#include "net-batch.h"
#include "fs-walk.h"

static napi_value init(napi_env env, napi_value exports) {
  napi_value abi;
  FERRY_CHECK(ferry_register_ktls(env, exports));
  FERRY_CHECK(ferry_register_records(env, exports));
  FERRY_CHECK(ferry_fs_batch_init(env, exports));
  FERRY_CHECK(ferry_net_batch_init(env, exports));
  FERRY_CHECK(ferry_register_meta(env, exports));
  FERRY_CHECK(ferry_fs_walk_init(env, exports));
  FERRY_CHECK(napi_create_int32(env, FERRY_NATIVE_ABI, &abi));
  FERRY_CHECK(napi_set_named_property(env, exports, "abi", abi));
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
