/**
 * `--exclude PATTERN`: rsync-style glob patterns compiled to one predicate.
 *
 * Syntax (README "Excludes"; a subset of rsync's filter rules, same meanings):
 *   *       any run of characters except '/'
 *   ?       one character except '/'
 *   **      any run of characters including '/'
 *   [...]   one character from the set; [!...] or [^...] negates; ranges a-z work
 *   \x      the character x literally
 *   /pat    a leading '/' anchors the pattern at the transfer root
 *   pat/    a trailing '/' matches directories only
 * A pattern without a leading '/' matches at any depth: against the whole relative
 * path or any tail of it that starts after a '/'. So a pattern with no '/' at all
 * matches the basename, like rsync. Relative paths are those the walker produces:
 * with `SRC` (no trailing slash) they start with SRC's name, as in rsync.
 *
 * An excluded directory is not descended into, and with `--delete` an excluded
 * entry in DST is never deleted (rsync's default, without --delete-excluded).
 *
 * Shared API: compileExcludes(patterns) -> (relPath, isDir) => boolean (true = excluded).
 */
import { ErrorCodes, FerryError } from '../core/errors.js';

export type ExcludeFn = (relPath: string, isDir: boolean) => boolean;

interface Rule {
  re: RegExp;
  dirOnly: boolean;
}

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(c) ? `\\${c}` : c;
}

/** Translate one glob (without its anchor and trailing slash) to a regex body. */
export function globToRegexBody(glob: string): string {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        // '**/' also matches zero directories: "a/**/b" matches "a/b".
        if (glob[i + 1] === '/') {
          i++;
          out += '(?:.*/)?';
        } else {
          out += '.*';
        }
      } else {
        out += '[^/]*';
      }
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '\\' && i + 1 < glob.length) {
      out += escapeRe(glob[++i]!);
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        out += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, end);
      let neg = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        neg = true;
        body = body.slice(1);
      }
      body = body.replace(/[\\\]^]/g, (m) => `\\${m}`);
      out += neg ? `[^/${body}]` : `[${body}]`;
      i = end;
    } else {
      out += escapeRe(c);
    }
  }
  return out;
}

export function compileExcludes(patterns: readonly string[]): ExcludeFn {
  const rules: Rule[] = [];
  for (const raw of patterns) {
    if (raw.length === 0) throw new FerryError(ErrorCodes.USAGE, '--exclude: empty pattern');
    let p = raw;
    let dirOnly = false;
    while (p.length > 1 && p.endsWith('/')) {
      dirOnly = true;
      p = p.slice(0, -1);
    }
    const anchored = p.startsWith('/');
    if (anchored) p = p.slice(1);
    if (p.length === 0) throw new FerryError(ErrorCodes.USAGE, `--exclude: pattern "${raw}" matches nothing`);
    const body = globToRegexBody(p);
    const re = new RegExp(anchored ? `^${body}$` : `^(?:.*/)?${body}$`, 's');
    rules.push({ re, dirOnly });
  }
  if (rules.length === 0) return () => false;
  return (relPath, isDir) => {
    for (const r of rules) {
      if (r.dirOnly && !isDir) continue;
      if (r.re.test(relPath)) return true;
    }
    return false;
  };
}
