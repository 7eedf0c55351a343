/*
 * ferry_native: shared declarations of the addon's source files. Each file
 * registers its functions on the exports object from ferry.c's init.
 */
#ifndef FERRY_NATIVE_H
#define FERRY_NATIVE_H
#include <node_api.h>

/* Bumped whenever an exported function changes its arguments or results. */
#define FERRY_NATIVE_ABI 5

#define FERRY_CHECK(call)                                                                  \
  do {                                                                                     \
    if ((call) != napi_ok) {                                                               \
      napi_throw_error(env, "FERRY_E_INTERNAL", "ferry_native: N-API call failed: " #call); \
      return NULL;                                                                         \
    }                                                                                      \
  } while (0)

/* ktls.c: setUlp, getUlp, setCrypto. */
napi_status ferry_register_ktls(napi_env env, napi_value exports);
/* records.c: recordsAvailable, aeadNew, sealRecords, openRecords (or only recordsAvailable
 * = a reason string when built without Node's OpenSSL headers or run by a node without EVP_*). */
napi_status ferry_register_records(napi_env env, napi_value exports);
/* meta.c: utimensFd, utimensPath, dataExtents, xattrList/Get/Set/Remove. */
napi_status ferry_register_meta(napi_env env, napi_value exports);

#endif
