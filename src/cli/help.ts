import { rsyncHelp } from './rsync-help.js';

/** `ferry --help`. Kept in step with README "Usage" and "Exit codes". */
export const HELP = `ferry — move directory trees fast and safely

Usage:
  ferry copy [options] SRC DST          copy a tree on this machine (like cp -a / rsync -a)
  ferry [options] SRC DST               the same (uring-sync's form)
  ferry recv DST --listen [ADDR:]PORT   receive a tree over the network
  ferry send SRC HOST:PORT              send a tree to a waiting 'ferry recv'
  ferry [options] SRC... [user@]host:DST   copy to another machine over ssh (push)
  ferry [options] [user@]host:SRC... DST   copy from another machine over ssh (pull)

  SRC/ (trailing slash) copies the contents of SRC into DST;
  SRC  (no slash) copies the directory itself, as DST/<name of SRC>.

  An operand is remote when a ':' comes before the first '/' (rsync's rule);
  ./a:b is local. '-' as SRC or DST is standard input/output (one file).
  Over ssh: -e/--rsh CMD (the ssh command), --remote-ferry PATH (ferry on the
  other machine), --via-ssh (carry the data over ssh itself), and every option
  of 'ferry send' (-P, --checksum, --delete, --exclude, -n, --json, ...).

Run 'ferry copy --help', 'ferry send --help', 'ferry recv --help' or
'ferry host:x --help' (the ssh mode) for options ('ferry help CMD' is the same;
CMD ssh is the ssh mode). -h/--help and -V/--version work with every command;
'ferry --version -v' also says which data-plane paths are in use.

Exit codes:
  0    everything delivered (and, over the network, confirmed by the receiver)
  1    some entries failed; each was listed with its reason
  2    usage error, missing SRC, DST inside SRC
  3    authentication failed (the shared secrets differ)
  4    connection, protocol or integrity failure
  130  interrupted
`;

/** `ferry copy --help`. Kept in step with README "ferry copy". */
export const COPY_HELP = `ferry copy — copy a tree on this machine (like cp -a / rsync -a)

Usage:
  ferry copy [options] SRC DST
  ferry [options] SRC DST            (uring-sync's form; same options)

  SRC/  copies the contents of SRC into DST;  SRC  copies SRC itself to DST/<name>.
  A single file SRC goes to DST/<name> when DST is a directory, else to DST.
  Preserves: file data (sparse files stay sparse), empty directories, permission
  bits, mtimes to the nanosecond (microseconds without the native addon), symlinks
  (never followed), hard links, and as root numeric owners and groups.
  FIFOs, sockets and devices are skipped with a warning. Each file is written to a
  temp name (.ferry-XXXXXXXX.<name>.part) and renamed into place when complete.
  A second run copies only what differs (size, mtime or mode; lstat only); a file
  whose bytes are already right (same size; same mtime, or same bytes when compared)
  only has its mode, owner and times set in place.

Options:
  -j, --jobs N             parallel jobs; jobs x queue depth operations in flight (default 1)
  -q, --queue-depth N      operations in flight per job (default 64)
  -c, --chunk-size SIZE    buffer for read/write and sparse copies, e.g. 128K, 1M (default 128K)
  -v, --verbose            print each copied/deleted entry and the settings used
      --progress=WHEN      auto (live line on a TTY, a line every 5 s otherwise),
                           always (redraw even when not a TTY), never (default auto)
      --json               print a JSON summary on stdout (schema: README)
  -n, --dry-run            show what would be copied/deleted; write nothing
      --checksum           compare content hashes (xxHash) of both sides instead of trusting size+mtime
      --delete             delete entries in DST that SRC does not have (not excluded ones)
      --exclude PATTERN    skip matching entries (repeatable): * ? ** [...] ; a leading /
                           anchors at the transfer root, a trailing / matches directories
                           only; a pattern without / matches the basename at any depth
      --preserve-special-bits  keep setuid/setgid/sticky bits (stripped by default)
  -o, --owner              keep owners (by number; the default as root; as non-root only where permitted)
  -g, --group              keep groups (by number; the default as root; as non-root only your own groups)
      --no-owner, --no-group   do not keep them even as root
      --numeric-ids        accepted (rsync's spelling): ids are always kept by number
  -X, --xattrs             keep extended attributes (user.*; as root also trusted.*, security.*);
                           needs the native data plane (FERRY_E_UNSUPPORTED without it)
  -A, --acls               keep POSIX ACLs (system.posix_acl_*); needs the native data plane
      --fsync              fsync each file before publishing it
      --sync               uring-sync compatibility: one operation at a time (-q 1)
      --no-splice          uring-sync compatibility: read/write instead of copy_file_range
  -h, --help               this help
  -V, --version            print the version

${rsyncHelp('copy')}
Exit codes:
  0  everything copied      1  some entries failed (each listed with its code)
  2  usage error, missing SRC (FERRY_E_SRC_MISSING), DST inside SRC (FERRY_E_DST_IN_SRC)
`;
