/* ferry's file data plane (fs-batch.c): registers copyFiles on the addon's exports. */
#ifndef FERRY_FS_BATCH_H
#define FERRY_FS_BATCH_H
#include <node_api.h>
napi_status ferry_fs_batch_init(napi_env env, napi_value exports);
/* A file without a name (O_TMPFILE) in the directory dfd, or -1 with errno (no O_TMPFILE
 * there: after the first refusal never tried again). */
int ferry_open_nameless(int dfd);
/* Link the nameless file fd as `name` in dfd; fails (EEXIST) rather than replace a name. */
int ferry_link_nameless(int fd, int dfd, const char *name);
/* The temp file `temp` in dfd (O_EXCL, O_NOFOLLOW, 0600; a leftover of ours replaced), or -1. */
int ferry_create_temp(int dfd, const char *temp);
/* Link it as `name`, or (a name there after all) as `temp` renamed onto `name`; "" for no temp. */
int ferry_publish_nameless(int fd, int dfd, const char *name, const char *temp);
#endif
