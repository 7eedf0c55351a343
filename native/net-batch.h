/* The network transfer's batches (net-batch.c): registers the content hash, readFiles and publishFiles. */
#ifndef FERRY_NET_BATCH_H
#define FERRY_NET_BATCH_H
#include <node_api.h>
napi_status ferry_net_batch_init(napi_env env, napi_value exports);
#endif
