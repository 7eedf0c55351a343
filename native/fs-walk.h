/* ferry's directory listing for the walk (fs-walk.c): registers listDir on the addon's exports. */
#ifndef FERRY_FS_WALK_H
#define FERRY_FS_WALK_H
#include <node_api.h>
napi_status ferry_fs_walk_init(napi_env env, napi_value exports);
#endif
