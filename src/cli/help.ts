/** `ferry --help`. Kept in step with README "Usage" and "Exit codes". */
export const HELP = `ferry — move directory trees fast and safely

Usage:
  ferry copy [options] SRC DST          copy a tree on this machine (like cp -a / rsync -a)
  ferry [options] SRC DST               the same (uring-sync's form)
  ferry recv DST --listen [ADDR:]PORT   receive a tree over the network
  ferry send SRC HOST:PORT              send a tree to a waiting 'ferry recv'

  SRC/ (trailing slash) copies the contents of SRC into DST;
  SRC  (no slash) copies the directory itself, as DST/<name of SRC>.

Run 'ferry copy --help', 'ferry send --help' or 'ferry recv --help' for options.

Exit codes:
  0    everything delivered (and, over the network, confirmed by the receiver)
  1    some entries failed; each was listed with its reason
  2    usage error, missing SRC, DST inside SRC
  3    authentication failed (the shared secrets differ)
  4    connection, protocol or integrity failure
  130  interrupted
`;
