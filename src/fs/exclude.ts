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
 * Why no RegExp: patterns reach the receiver from the peer, and a glob translated
 * to a backtracking regex is exponential in the number of stars: `*a*a*a…*b`
 * against a long name of 'a's blocked the event loop for hours, under `--delete`,
 * with SIGTERM never handled (issue #11). rsync's wildmatch bounds its recursion
 * for the same reason. Here a pattern compiles to a list of tokens, read as a
 * nondeterministic automaton whose states are the positions between tokens, and
 * the matcher simulates all of them at once (Thompson's construction, without the
 * regex): one pass over the name, at most one step per (character, token) pair.
 * So a match costs O(name length × pattern length) in the worst case, whatever
 * the pattern, and no pattern from a peer can stall the process.
 *
 * The automaton, token by token (state k = "the first k tokens have matched"):
 *   literal c, ?, [...]   k → k+1 on a matching character
 *   *                     k → k (any character but '/'), k → k+1 without input
 *   **                    k → k (any character), k → k+1 without input
 *   ** followed by /      two states: k → k+2 without input ("zero directories",
 *                         so a/**\/b matches a/b), k → k+1 without input, and
 *                         k+1 → k+1 (any character), k+1 → k+2 on '/'
 * An unanchored pattern is the same with a leading "** followed by /" token.
 * Patterns that cannot match a '/' and are unanchored only ever match the basename,
 * and patterns without wildcards are compared as strings: the common cases
 * (`*.tmp`, `.git`) stay cheap on trees of 100,000s of names.
 *
 * `--include PATTERN` (same syntax) keeps what it matches: rules are tried in the
 * order given and the first that matches decides (rsync's rule), so
 * `--include '*.txt' --exclude '*'` keeps only .txt files at the top level.
 *
 * Shared API: compileExcludes(patterns) / compileFilters(rules) ->
 * (relPath, isDir) => boolean (true = excluded).
 */
import { ErrorCodes, FerryError } from '../core/errors.js';

export type ExcludeFn = (relPath: string, isDir: boolean) => boolean;

const SLASH = 0x2f;

const enum Tok {
  /** One given character. */
  Lit,
  /** `?`: one character but '/'. */
  One,
  /** `[...]`: one character of a set (a negated set never matches '/'). */
  Class,
  /** `*`: any run of characters but '/'. */
  Star,
  /** `**`: any run of characters. */
  DStar,
  /** `**` before a '/': empty, or any run that ends with '/'. Always followed by a DirsLoop. */
  DStarSlash,
  /** The inside of a DStarSlash: any run, left on a '/'. */
  DirsLoop,
}

interface CharClass {
  negated: boolean;
  /** Inclusive [lo, hi] pairs of UTF-16 code units. */
  ranges: number[];
}

/** One pattern, compiled. */
export interface Glob {
  readonly kinds: Uint8Array;
  /** The character of each Lit token. */
  readonly chars: Uint16Array;
  /** The set of each Class token (undefined elsewhere). */
  readonly classes: ReadonlyArray<CharClass | undefined>;
  /** Every token is a Lit: the pattern is this string. */
  readonly literal: string | null;
  /** The Lit tokens at the end: every match ends with this string (a cheap first test). */
  readonly suffix: string;
  /** Up to 30 tokens: the states as bits of one integer (see `globMatch`); null above. */
  readonly bits: BitTables | null;
}

/**
 * The automaton as bit masks, bit k standing for state k (Shift-And, Baeza-Yates
 * and Gonnet, extended with self-loops and moves without input for the stars).
 * For a character c: next = ((cur & adv[c]) << 1) | (cur & loop[c]), then the moves
 * without input. Tables cover ASCII; other characters are computed on the way.
 */
interface BitTables {
  adv: Int32Array;
  loop: Int32Array;
  /** States with a move without input to k+1 (every star kind), to k+2 (DStarSlash). */
  eps1: number;
  eps2: number;
  accept: number;
}

const MAX_BIT_TOKENS = 30;

function classMatches(cls: CharClass, c: number): boolean {
  let hit = false;
  const r = cls.ranges;
  for (let i = 0; i < r.length; i += 2) {
    if (c >= r[i]! && c <= r[i + 1]!) {
      hit = true;
      break;
    }
  }
  return cls.negated ? !hit && c !== SLASH : hit;
}

/**
 * Parse a set body (between '[' and ']', negation already removed). As in the
 * regular expressions ferry used before: characters are literal (a backslash too),
 * `x-y` is a range, a '-' first or last is literal.
 */
function parseClass(body: string, negated: boolean, raw: string): CharClass {
  const ranges: number[] = [];
  for (let k = 0; k < body.length; k++) {
    const lo = body.charCodeAt(k);
    if (body[k + 1] === '-' && k + 2 < body.length) {
      const hi = body.charCodeAt(k + 2);
      if (hi < lo) throw new FerryError(ErrorCodes.USAGE, `--exclude: pattern "${raw}": range ${body.slice(k, k + 3)} is out of order`);
      ranges.push(lo, hi);
      k += 2;
    } else {
      ranges.push(lo, lo);
    }
  }
  return { negated, ranges };
}

/**
 * Compile one glob (without its anchor and trailing slash) to tokens. With
 * `unanchored`, a leading "zero or more directories" token lets it match any tail
 * of a path that starts after a '/'.
 */
export function compileGlob(glob: string, unanchored = false, raw = glob): Glob {
  const kinds: number[] = [];
  const chars: number[] = [];
  const classes: Array<CharClass | undefined> = [];
  const push = (k: Tok, c = 0, cls?: CharClass): void => {
    kinds.push(k);
    chars.push(c);
    classes.push(cls);
  };
  const dirs = (): void => {
    push(Tok.DStarSlash);
    push(Tok.DirsLoop);
  };
  if (unanchored) dirs();
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        // '**/' also matches zero directories: "a/**/b" matches "a/b".
        if (glob[i + 1] === '/') {
          i++;
          dirs();
        } else {
          push(Tok.DStar);
        }
      } else {
        push(Tok.Star);
      }
    } else if (c === '?') {
      push(Tok.One);
    } else if (c === '\\' && i + 1 < glob.length) {
      push(Tok.Lit, glob.charCodeAt(++i));
    } else if (c === '[') {
      // The first character after '[' never closes the set: "[]a]" is ']' or 'a'.
      const end = glob.indexOf(']', i + 2);
      if (end < 0) {
        push(Tok.Lit, c.charCodeAt(0));
        continue;
      }
      let body = glob.slice(i + 1, end);
      let negated = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negated = true;
        body = body.slice(1);
      }
      push(Tok.Class, 0, parseClass(body, negated, raw));
      i = end;
    } else {
      push(Tok.Lit, glob.charCodeAt(i));
    }
  }
  const literal = kinds.every((k) => k === Tok.Lit) ? String.fromCharCode(...chars) : null;
  let tail = kinds.length;
  while (tail > 0 && kinds[tail - 1] === Tok.Lit) tail--;
  const suffix = String.fromCharCode(...chars.slice(tail));
  const g = { kinds: Uint8Array.from(kinds), chars: Uint16Array.from(chars), classes, literal, suffix, bits: null };
  return { ...g, bits: kinds.length <= MAX_BIT_TOKENS ? bitTables(g) : null };
}

/** For character c: [states that advance on it, states that stay on it]. */
function masksFor(g: Omit<Glob, 'bits'>, c: number): [number, number] {
  let adv = 0;
  let loop = 0;
  for (let k = 0; k < g.kinds.length; k++) {
    const bit = 1 << k;
    switch (g.kinds[k]) {
      case Tok.Lit:
        if (c === g.chars[k]) adv |= bit;
        break;
      case Tok.One:
        if (c !== SLASH) adv |= bit;
        break;
      case Tok.Class:
        if (classMatches(g.classes[k]!, c)) adv |= bit;
        break;
      case Tok.Star:
        if (c !== SLASH) loop |= bit;
        break;
      case Tok.DStar:
        loop |= bit;
        break;
      case Tok.DirsLoop:
        loop |= bit;
        if (c === SLASH) adv |= bit;
        break;
    }
  }
  return [adv, loop];
}

function bitTables(g: Omit<Glob, 'bits'>): BitTables {
  const adv = new Int32Array(128);
  const loop = new Int32Array(128);
  for (let c = 0; c < 128; c++) [adv[c], loop[c]] = masksFor(g, c);
  let eps1 = 0;
  let eps2 = 0;
  for (let k = 0; k < g.kinds.length; k++) {
    const kind = g.kinds[k];
    if (kind === Tok.Star || kind === Tok.DStar || kind === Tok.DStarSlash) eps1 |= 1 << k;
    if (kind === Tok.DStarSlash) eps2 |= 1 << k;
  }
  return { adv, loop, eps1, eps2, accept: 1 << g.kinds.length };
}

/** The moves without input, until nothing changes (one round per star in a row). */
function closeBits(x: number, eps1: number, eps2: number): number {
  for (;;) {
    const y = x | ((x & eps1) << 1) | ((x & eps2) << 2);
    if (y === x) return x;
    x = y;
  }
}

/** True when some name containing '/' could be matched by a token of `g`. */
function canMatchSlash(g: Glob): boolean {
  for (let k = 0; k < g.kinds.length; k++) {
    const kind = g.kinds[k]!;
    if (kind === Tok.DStar || kind === Tok.DStarSlash) return true;
    if (kind === Tok.Lit && g.chars[k] === SLASH) return true;
    if (kind === Tok.Class && classMatches(g.classes[k]!, SLASH)) return true;
  }
  return false;
}

/**
 * Does `g` match all of s[from..]? Simulates the automaton over every state at
 * once: O((s.length - from) × tokens) steps, never more; with up to 30 tokens
 * the states are the bits of one integer and a character costs a few operations.
 */
export function globMatch(g: Glob, s: string, from = 0): boolean {
  const { kinds, chars, classes } = g;
  const m = kinds.length;
  if (g.literal !== null) return s.length - from === m && (from === 0 ? s === g.literal : s.endsWith(g.literal));
  if (s.length - from < g.suffix.length || !s.endsWith(g.suffix)) return false;
  const b = g.bits;
  if (b !== null) {
    const { adv, loop, eps1, eps2 } = b;
    let cur = closeBits(1, eps1, eps2);
    for (let i = from; i < s.length; i++) {
      const c = s.charCodeAt(i);
      let a: number;
      let l: number;
      if (c < 128) {
        a = adv[c]!;
        l = loop[c]!;
      } else [a, l] = masksFor(g, c);
      cur = ((cur & a) << 1) | (cur & l);
      if (cur === 0) return false;
      if ((cur & eps1) !== 0) cur = closeBits(cur, eps1, eps2);
    }
    return (cur & b.accept) !== 0;
  }
  let cur = new Uint8Array(m + 1);
  let next = new Uint8Array(m + 1);
  cur[0] = 1;
  close(kinds, cur);
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    next.fill(0);
    for (let k = 0; k < m; k++) {
      if (cur[k] === 0) continue;
      switch (kinds[k]) {
        case Tok.Lit:
          if (c === chars[k]) next[k + 1] = 1;
          break;
        case Tok.One:
          if (c !== SLASH) next[k + 1] = 1;
          break;
        case Tok.Class:
          if (classMatches(classes[k]!, c)) next[k + 1] = 1;
          break;
        case Tok.Star:
          if (c !== SLASH) next[k] = 1;
          break;
        case Tok.DStar:
          next[k] = 1;
          break;
        case Tok.DirsLoop:
          next[k] = 1;
          if (c === SLASH) next[k + 1] = 1;
          break;
      }
    }
    const alive = close(kinds, next);
    if (!alive) return false;
    const t = cur;
    cur = next;
    next = t;
  }
  return cur[m] === 1;
}

/**
 * Follow the moves that take no input (past a star, into or over a run of
 * directories) and say whether any state is live. They only go forward, so one
 * ascending pass does it.
 */
function close(kinds: Uint8Array, set: Uint8Array): boolean {
  let alive = false;
  for (let k = 0; k < kinds.length; k++) {
    if (set[k] === 0) continue;
    alive = true;
    const kind = kinds[k]!;
    if (kind === Tok.Star || kind === Tok.DStar) set[k + 1] = 1;
    else if (kind === Tok.DStarSlash) set[k + 1] = set[k + 2] = 1;
  }
  return alive || set[kinds.length] === 1;
}

interface Rule {
  glob: Glob;
  dirOnly: boolean;
  /** Unanchored and unable to match '/': only the basename can match. */
  basename: boolean;
  /** `--include`: a match keeps the entry (and stops the search). */
  include: boolean;
}

/** One `--include` or `--exclude` pattern, in command-line order. */
export interface FilterRule {
  include: boolean;
  pattern: string;
}

export function compileExcludes(patterns: readonly string[]): ExcludeFn {
  return compileFilters(patterns.map((pattern) => ({ include: false, pattern })));
}

/**
 * `--include` / `--exclude` in the order given: the first rule that matches decides,
 * as in rsync; an entry no rule matches is kept. Each rule is one linear match, so
 * the whole list costs O(rules × name × pattern) at worst.
 */
export function compileFilters(filters: readonly FilterRule[]): ExcludeFn {
  const rules: Rule[] = [];
  for (const { include, pattern: raw } of filters) {
    const opt = include ? '--include' : '--exclude';
    if (raw.length === 0) throw new FerryError(ErrorCodes.USAGE, `${opt}: empty pattern`);
    let p = raw;
    let dirOnly = false;
    while (p.length > 1 && p.endsWith('/')) {
      dirOnly = true;
      p = p.slice(0, -1);
    }
    const anchored = p.startsWith('/');
    if (anchored) p = p.slice(1);
    if (p.length === 0) throw new FerryError(ErrorCodes.USAGE, `${opt}: pattern "${raw}" matches nothing`);
    const plain = compileGlob(p, false, raw);
    if (anchored) rules.push({ glob: plain, dirOnly, basename: false, include });
    else if (!canMatchSlash(plain)) rules.push({ glob: plain, dirOnly, basename: true, include });
    else rules.push({ glob: compileGlob(p, true, raw), dirOnly, basename: false, include });
  }
  if (rules.length === 0) return () => false;
  return (relPath, isDir) => {
    let base = -1;
    for (const r of rules) {
      if (r.dirOnly && !isDir) continue;
      if (r.basename) {
        if (base < 0) base = relPath.lastIndexOf('/') + 1;
        if (globMatch(r.glob, relPath, base)) return !r.include;
      } else if (globMatch(r.glob, relPath)) return !r.include;
    }
    return false;
  };
}

/**
 * Patterns from a file (`--exclude-from`, `--include-from`), rsync's format: one per
 * line, blank lines and lines starting with ';' or '#' ignored, CR before LF dropped.
 */
export function parsePatternList(text: string): string[] {
  return text
    .split('\n')
    .map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l))
    .filter((l) => l.length > 0 && !l.startsWith('#') && !l.startsWith(';'));
}
