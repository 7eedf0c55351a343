/*
 * ferry's metadata calls that Node's fs API lacks: nanosecond times, the data
 * extents of sparse files, and extended attributes.
 *
 * Why native: Node passes times to utimensat as double seconds and libuv keeps
 * whole microseconds, so `cp -a`'s nine digits cannot be set from JavaScript;
 * lseek(SEEK_DATA/SEEK_HOLE) and the *xattr calls have no Node binding at all.
 * Each call is one cheap system call on cached metadata, so these run synchronously
 * on the calling thread, like fs/meta-ops' synchronous calls (a pool hand-off would
 * cost more than the call).
 *
 * It decides nothing: TypeScript (src/fs/meta-native.ts) picks the descriptor or
 * path (a descriptor it checked, or /proc/self/fd/N of one), the times, the names,
 * the values, and what a failure means. Every function returns a negative errno
 * instead of throwing, so the caller turns it into the usual FerryError.
 *
 *   utimensFd(fd, sec, nsec)              futimens, atime = mtime: 0 or -errno
 *   utimensPath(path, sec, nsec, follow)  utimensat (AT_SYMLINK_NOFOLLOW unless follow)
 *   dataExtents(fd, size, maxPairs)       SEEK_DATA/SEEK_HOLE walk: Float64Array of
 *                                         [start, end) pairs, or -errno (EINVAL etc.:
 *                                         the filesystem cannot say; treat all as data)
 *   xattrList(path, follow)               Buffer of NUL-terminated names, or -errno
 *   xattrGet(path, name, follow)          Buffer, or -errno
 *   xattrSet(path, name, value, follow)   0 or -errno
 *   xattrRemove(path, name, follow)       0 or -errno
 *   ownerName(group, id)                  getpwuid_r/getgrgid_r: the name, or null when
 *                                         there is none (or the lookup failed)
 *   ownerId(group, name)                  getpwnam_r/getgrnam_r: the id, or -1 when the
 *                                         name is unknown (or the lookup failed)
 *   setPipeSize(fd, bytes)                fcntl(F_SETPIPE_SZ): the pipe's new capacity, or
 *                                         -errno (not a pipe, over the user's limit); the
 *                                         --via-ssh path's stdio pipes (src/modes/server.ts)
 *
 * The owner lookups go through NSS (files, LDAP, sssd...) like `ls -l` does; they may
 * block on a directory service, which is why ferry looks each id or name up once per
 * session (src/fs/owner-names.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <node_api.h>

#include "ferry.h"

/* XATTR_LIST_MAX / XATTR_SIZE_MAX of Linux: nothing larger can exist. */
#define LIST_MAX 65536
#define VALUE_MAX 65536
#define PATH_MAX_BYTES 4096

static napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "ferry_native: missing arguments");
    return 0;
  }
  return 1;
}

static int get_i64(napi_env env, napi_value v, int64_t *out) {
  if (napi_get_value_int64(env, v, out) != napi_ok) {
    napi_throw_type_error(env, NULL, "ferry_native: expected a number");
    return 0;
  }
  return 1;
}

/* Copies a JS string into buf (NUL-terminated); fails on a too-long string. */
static int get_str(napi_env env, napi_value v, char *buf, size_t cap) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len + 1 > cap) {
    napi_throw_type_error(env, NULL, "ferry_native: expected a string of bounded length");
    return 0;
  }
  napi_get_value_string_utf8(env, v, buf, cap, &len);
  return 1;
}

static int get_bool(napi_env env, napi_value v) {
  bool b = false;
  napi_get_value_bool(env, v, &b);
  return b ? 1 : 0;
}

static int fill_ts(int64_t sec, int64_t nsec, struct timespec ts[2]) {
  if (nsec < 0 || nsec >= 1000000000) return 0;
  ts[0].tv_sec = (time_t)sec;
  ts[0].tv_nsec = (long)nsec;
  ts[1] = ts[0];
  return 1;
}

static napi_value utimens_fd(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t fd, sec, nsec;
  if (!get_args(env, info, 3, argv) || !get_i64(env, argv[0], &fd) || !get_i64(env, argv[1], &sec) || !get_i64(env, argv[2], &nsec)) return NULL;
  struct timespec ts[2];
  if (!fill_ts(sec, nsec, ts)) return num(env, -EINVAL);
  return num(env, futimens((int)fd, ts) == 0 ? 0 : -errno);
}

static napi_value utimens_path(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int64_t sec, nsec;
  char path[PATH_MAX_BYTES];
  if (!get_args(env, info, 4, argv) || !get_str(env, argv[0], path, sizeof path) || !get_i64(env, argv[1], &sec) ||
      !get_i64(env, argv[2], &nsec))
    return NULL;
  struct timespec ts[2];
  if (!fill_ts(sec, nsec, ts)) return num(env, -EINVAL);
  int flags = get_bool(env, argv[3]) ? 0 : AT_SYMLINK_NOFOLLOW;
  return num(env, utimensat(AT_FDCWD, path, ts, flags) == 0 ? 0 : -errno);
}

static napi_value set_pipe_size(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t fd, bytes;
  if (!get_args(env, info, 2, argv) || !get_i64(env, argv[0], &fd) || !get_i64(env, argv[1], &bytes)) return NULL;
  if (bytes <= 0 || bytes > INT32_MAX) return num(env, -EINVAL);
  int r = fcntl((int)fd, F_SETPIPE_SZ, (int)bytes);
  return num(env, r >= 0 ? r : -errno);
}

static napi_value data_extents(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int64_t fd, size, max;
  if (!get_args(env, info, 3, argv) || !get_i64(env, argv[0], &fd) || !get_i64(env, argv[1], &size) || !get_i64(env, argv[2], &max)) return NULL;
  if (max < 1 || max > 1 << 20 || size < 0) return num(env, -EINVAL);
  double *pairs = malloc((size_t)max * 2 * sizeof(double));
  if (!pairs) return num(env, -ENOMEM);
  int64_t n = 0, off = 0;
  while (off < size) {
    off_t d = lseek((int)fd, (off_t)off, SEEK_DATA);
    if (d < 0) {
      if (errno == ENXIO) break; /* only a hole from here to the end */
      int e = errno;
      free(pairs);
      return num(env, -e);
    }
    if (d >= size) break;
    off_t h = lseek((int)fd, d, SEEK_HOLE);
    if (h < 0) {
      int e = errno;
      free(pairs);
      return num(env, -e);
    }
    if (h > size) h = size;
    if (n == max) {
      /* Too many extents to list: the rest counts as data (correct, merely less sparse). */
      pairs[2 * n - 1] = (double)size;
      break;
    }
    pairs[2 * n] = (double)d;
    pairs[2 * n + 1] = (double)h;
    n++;
    off = h;
  }
  napi_value ab, arr;
  void *raw = NULL;
  if (napi_create_arraybuffer(env, (size_t)n * 2 * sizeof(double), &raw, &ab) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, (size_t)n * 2, ab, 0, &arr) != napi_ok) {
    free(pairs);
    return num(env, -ENOMEM);
  }
  if (n > 0) memcpy(raw, pairs, (size_t)n * 2 * sizeof(double));
  free(pairs);
  return arr;
}

static napi_value buffer_of(napi_env env, const char *data, size_t len) {
  napi_value b;
  void *dst = NULL;
  if (napi_create_buffer_copy(env, len, data, &dst, &b) != napi_ok) return num(env, -ENOMEM);
  return b;
}

static napi_value xattr_list(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char path[PATH_MAX_BYTES];
  if (!get_args(env, info, 2, argv) || !get_str(env, argv[0], path, sizeof path)) return NULL;
  int follow = get_bool(env, argv[1]);
  char *buf = malloc(LIST_MAX);
  if (!buf) return num(env, -ENOMEM);
  ssize_t n = follow ? listxattr(path, buf, LIST_MAX) : llistxattr(path, buf, LIST_MAX);
  napi_value r = n < 0 ? num(env, -errno) : buffer_of(env, buf, (size_t)n);
  free(buf);
  return r;
}

static napi_value xattr_get(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char path[PATH_MAX_BYTES], name[256];
  if (!get_args(env, info, 3, argv) || !get_str(env, argv[0], path, sizeof path) || !get_str(env, argv[1], name, sizeof name)) return NULL;
  int follow = get_bool(env, argv[2]);
  char *buf = malloc(VALUE_MAX);
  if (!buf) return num(env, -ENOMEM);
  ssize_t n = follow ? getxattr(path, name, buf, VALUE_MAX) : lgetxattr(path, name, buf, VALUE_MAX);
  napi_value r = n < 0 ? num(env, -errno) : buffer_of(env, buf, (size_t)n);
  free(buf);
  return r;
}

static napi_value xattr_set(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char path[PATH_MAX_BYTES], name[256];
  void *data = NULL;
  size_t len = 0;
  if (!get_args(env, info, 4, argv) || !get_str(env, argv[0], path, sizeof path) || !get_str(env, argv[1], name, sizeof name)) return NULL;
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "xattrSet: value must be a Buffer");
    return NULL;
  }
  if (len > VALUE_MAX) return num(env, -E2BIG);
  int follow = get_bool(env, argv[3]);
  int r = follow ? setxattr(path, name, data, len, 0) : lsetxattr(path, name, data, len, 0);
  return num(env, r == 0 ? 0 : -errno);
}

static napi_value xattr_remove(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char path[PATH_MAX_BYTES], name[256];
  if (!get_args(env, info, 3, argv) || !get_str(env, argv[0], path, sizeof path) || !get_str(env, argv[1], name, sizeof name)) return NULL;
  int follow = get_bool(env, argv[2]);
  int r = follow ? removexattr(path, name) : lremovexattr(path, name);
  return num(env, r == 0 ? 0 : -errno);
}

/* Room for one passwd/group record: sysconf's hint, doubled on ERANGE up to 1 MiB. */
#define LOOKUP_START 16384
#define LOOKUP_MAX (1 << 20)

static napi_value owner_name(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int group = get_bool(env, argv[0]);
  double d = 0;
  if (napi_get_value_double(env, argv[1], &d) != napi_ok || d < 0 || d > 4294967294.0) return num(env, -EINVAL);
  unsigned id = (unsigned)d;
  size_t size = LOOKUP_START;
  for (;;) {
    char *buf = malloc(size);
    if (!buf) return num(env, -ENOMEM);
    const char *name = NULL;
    int rc;
    if (group) {
      struct group g, *res = NULL;
      rc = getgrgid_r((gid_t)id, &g, buf, size, &res);
      if (rc == 0 && res) name = res->gr_name;
    } else {
      struct passwd p, *res = NULL;
      rc = getpwuid_r((uid_t)id, &p, buf, size, &res);
      if (rc == 0 && res) name = res->pw_name;
    }
    if (rc == ERANGE && size < LOOKUP_MAX) {
      free(buf);
      size *= 2;
      continue;
    }
    napi_value r;
    if (!name) napi_get_null(env, &r); /* none, or the lookup failed: send the number */
    else if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &r) != napi_ok) r = num(env, -ENOMEM);
    free(buf);
    return r;
  }
}

static napi_value owner_id(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[256];
  if (!get_args(env, info, 2, argv) || !get_str(env, argv[1], name, sizeof name)) return NULL;
  int group = get_bool(env, argv[0]);
  size_t size = LOOKUP_START;
  for (;;) {
    char *buf = malloc(size);
    if (!buf) return num(env, -ENOMEM);
    double id = -1;
    int rc;
    if (group) {
      struct group g, *res = NULL;
      rc = getgrnam_r(name, &g, buf, size, &res);
      if (rc == 0 && res) id = (double)res->gr_gid;
    } else {
      struct passwd p, *res = NULL;
      rc = getpwnam_r(name, &p, buf, size, &res);
      if (rc == 0 && res) id = (double)res->pw_uid;
    }
    free(buf);
    if (rc == ERANGE && size < LOOKUP_MAX) {
      size *= 2;
      continue;
    }
    /* Not found may be 0, ENOENT, ESRCH, EBADF or EPERM (getpwnam_r(3)); any failure
       means "unknown here", and the caller keeps the sender's number. */
    napi_value r;
    if (napi_create_double(env, id, &r) != napi_ok) return num(env, -ENOMEM);
    return r;
  }
}

napi_status ferry_register_meta(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"utimensFd", NULL, utimens_fd, NULL, NULL, NULL, napi_default, NULL},
      {"utimensPath", NULL, utimens_path, NULL, NULL, NULL, napi_default, NULL},
      {"dataExtents", NULL, data_extents, NULL, NULL, NULL, napi_default, NULL},
      {"xattrList", NULL, xattr_list, NULL, NULL, NULL, napi_default, NULL},
      {"xattrGet", NULL, xattr_get, NULL, NULL, NULL, napi_default, NULL},
      {"xattrSet", NULL, xattr_set, NULL, NULL, NULL, napi_default, NULL},
      {"xattrRemove", NULL, xattr_remove, NULL, NULL, NULL, napi_default, NULL},
      {"ownerName", NULL, owner_name, NULL, NULL, NULL, napi_default, NULL},
      {"ownerId", NULL, owner_id, NULL, NULL, NULL, napi_default, NULL},
      {"setPipeSize", NULL, set_pipe_size, NULL, NULL, NULL, napi_default, NULL},
  };
  return napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
