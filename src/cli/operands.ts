/**
 * Which operands name another machine: rsync's rule, so that a command that means
 * one thing to rsync/scp means the same thing to ferry.
 *
 *   -                       standard input / output (a stream; see the ssh mode)
 *   /abs/path, ./rel        always local (a `./` in front forces a local name with a colon)
 *   [user@]host:path        remote: a ':' comes before the first '/'
 *   [user@][v6addr]:path    an IPv6 literal in brackets
 *   host::module            rsync daemon syntax: refused (ferry has no daemon)
 *
 * So `ferry copy src user@host:/x` is never a local directory named "user@host:"; write
 * `./user@host:/x` for that. An empty remote path (`host:`) is the remote home
 * directory, as with scp and rsync.
 *
 * The host part is checked before it reaches ssh's argv: it must not start with '-'
 * (ssh would read it as an option) and may not contain whitespace or control
 * characters. Paths are never checked or quoted here: they travel inside the
 * authenticated channel, never on a command line.
 */
import { ErrorCodes, FerryError } from '../core/errors.js';

export type Operand =
  | { kind: 'local'; path: string }
  | { kind: 'stdio' }
  | { kind: 'remote'; user: string | undefined; host: string; path: string; /** as given, for messages */ text: string };

/** True when the operand names a remote side (rsync's rule). */
export function isRemoteOperand(s: string): boolean {
  return parseOperand(s).kind === 'remote';
}

export function parseOperand(s: string): Operand {
  if (s === '-') return { kind: 'stdio' };
  if (s.startsWith('/') || s.startsWith('./') || s.startsWith('../')) return { kind: 'local', path: s };
  // [user@][v6]:path
  const v6 = /^(?:([^@/\[\]:]+)@)?\[([0-9A-Fa-f:.%a-zA-Z_-]+)\]:(.*)$/s.exec(s);
  if (v6) return remote(v6[1], v6[2]!, v6[3]!, s);
  const colon = s.indexOf(':');
  if (colon <= 0) return { kind: 'local', path: s };
  const slash = s.indexOf('/');
  if (slash !== -1 && slash < colon) return { kind: 'local', path: s };
  if (s[colon + 1] === ':') {
    throw new FerryError(ErrorCodes.USAGE, `${s}: rsync daemon syntax (host::module) is not supported; use host:path`);
  }
  const hostPart = s.slice(0, colon);
  const at = hostPart.lastIndexOf('@');
  const user = at >= 0 ? hostPart.slice(0, at) : undefined;
  const host = at >= 0 ? hostPart.slice(at + 1) : hostPart;
  return remote(user, host, s.slice(colon + 1), s);
}

function remote(user: string | undefined, host: string, path: string, text: string): Operand {
  // eslint-disable-next-line no-control-regex
  const bad = /[\s\u0000-\u001f\u007f]/;
  if (host === '' || host.startsWith('-') || bad.test(host)) {
    throw new FerryError(ErrorCodes.USAGE, `${JSON.stringify(text)}: not a usable host name`);
  }
  if (user !== undefined && (user === '' || user.startsWith('-') || bad.test(user))) {
    throw new FerryError(ErrorCodes.USAGE, `${JSON.stringify(text)}: not a usable user name`);
  }
  return { kind: 'remote', user, host, path, text };
}

/** The ssh destination argument: `user@host` or `host` (brackets are not used by ssh). */
export function sshDestination(o: { user: string | undefined; host: string }): string {
  return o.user !== undefined ? `${o.user}@${o.host}` : o.host;
}
