/**
 * Caps on everything a peer (or a hostile tree) controls. Each one is checked
 * before memory is allocated or a path is used. Numbers chosen generously for real
 * datasets and far below what would hurt the machine.
 */

/** Longest relative path, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Longest single path component, in UTF-8 bytes (NAME_MAX). */
export const MAX_NAME_BYTES = 255;
/** Deepest directory nesting accepted. */
export const MAX_PATH_DEPTH = 256;
/** Longest symlink target accepted, in bytes. */
export const MAX_LINK_TARGET_BYTES = 4096;
/** Largest single file accepted from a peer: 16 TiB. */
export const MAX_FILE_SIZE = 2 ** 44;
