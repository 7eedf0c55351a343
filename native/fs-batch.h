/* ferry's file data plane (fs-batch.c): registers copyFiles on the addon's exports. */
#ifndef FERRY_FS_BATCH_H
#define FERRY_FS_BATCH_H
#include <node_api.h>
napi_status ferry_fs_batch_init(napi_env env, napi_value exports);
#endif
