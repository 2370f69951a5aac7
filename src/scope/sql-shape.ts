/**
 * What SQL text holds, as far as pg-tenant needs to know before sending it: whether it is several
 * statements (they cannot be Parsed as one, so they take the simple protocol), and which of them
 * are transaction control (BEGIN, COMMIT, ...), which a scope must refuse or translate.
 *
 * A small lexer, not a parser: it skips string literals ('...', E'...' with backslash escapes),
 * quoted identifiers, dollar-quoted bodies ($tag$...$tag$), comments (-- and nested block
 * comments) and SQL-standard function bodies (BEGIN ATOMIC ... END, whose semicolons do not end
 * the statement), and reads the leading keywords of each statement. When unsure it answers
 * "several", which only costs round trips, never correctness. What no lexer can see (a DO block,
 * a function) is handled by the scope from the transaction status the server reports.
 */

/**
 * The transaction-control statements a scope cares about:
 * - `begin`: BEGIN or START TRANSACTION, with or without transaction modes;
 * - `commit`: COMMIT or END (also `AND NO CHAIN`);
 * - `rollback`: ROLLBACK or ABORT (also `AND NO CHAIN`), not ROLLBACK TO / ROLLBACK PREPARED;
 * - `chain`: COMMIT / END / ROLLBACK / ABORT ... `AND CHAIN`, which ends a transaction and opens
 *   another one at once;
 * - `prepare`: PREPARE TRANSACTION, which ends the transaction and parks it;
 * - `set-transaction`: SET TRANSACTION ..., valid only before the transaction's first query;
 * - `savepoint`: SAVEPOINT, RELEASE [SAVEPOINT], ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT].
 */
export type TransactionControl = 'begin' | 'commit' | 'rollback' | 'chain' | 'prepare' | 'set-transaction' | 'savepoint'

/** What {@link analyzeSql} found in a text. */
export interface SqlShape {
  /** More than one statement: the text must go alone, on the simple protocol. */
  readonly several: boolean
  /** The transaction control of each statement, in order; `undefined` for anything else. */
  readonly controls: ReadonlyArray<TransactionControl | undefined>
}

// Keywords that may start a transaction-control statement: any other first word is "not control",
// which the common case (one statement, no `;`) learns without lexing the rest.
const CONTROL_START = new Set(['begin', 'start', 'commit', 'end', 'rollback', 'abort', 'prepare', 'set', 'savepoint', 'release'])
const ONE_OTHER: SqlShape = { several: false, controls: [undefined] }
// A statement's leading keywords are enough to classify it.
const HEAD_WORDS = 6

/**
 * Whether `text` is several statements, and the transaction control each one is.
 *
 * @example
 * ```ts
 * analyzeSql('select 1')              // { several: false, controls: [undefined] }
 * analyzeSql('COMMIT AND CHAIN')      // { several: false, controls: ['chain'] }
 * analyzeSql('commit; begin')         // { several: true, controls: ['commit', 'begin'] }
 * ```
 */
export function analyzeSql(text: string): SqlShape {
  if (!text.includes(';')) {
    const first = firstWord(text)
    if (first === undefined || !CONTROL_START.has(first)) return ONE_OTHER
  }
  const heads = statementHeads(text)
  return { several: heads.length > 1, controls: heads.map(classify) }
}

/** The first control statement in `shape` that is one of `kinds`, if any. */
export function findControl(shape: SqlShape, kinds: ReadonlySet<TransactionControl>): TransactionControl | undefined {
  for (const control of shape.controls) if (control !== undefined && kinds.has(control)) return control
  return undefined
}

function classify(words: readonly string[]): TransactionControl | undefined {
  const [first, second] = words
  switch (first) {
    case 'begin':
      return 'begin'
    case 'start':
      return second === 'transaction' ? 'begin' : undefined
    case 'savepoint':
    case 'release':
      return 'savepoint'
    case 'prepare':
      return second === 'transaction' ? 'prepare' : undefined
    case 'set':
      return second === 'transaction' ? 'set-transaction' : undefined
    case 'commit':
    case 'end':
    case 'rollback':
    case 'abort': {
      let rest = words.slice(1)
      if (rest[0] === 'work' || rest[0] === 'transaction') rest = rest.slice(1)
      if (rest[0] === 'prepared') return undefined // COMMIT / ROLLBACK PREPARED: not this session's transaction
      if (rest[0] === 'to') return first === 'rollback' || first === 'abort' ? 'savepoint' : undefined
      if (rest[0] === 'and') return rest[1] === 'chain' ? 'chain' : first === 'commit' || first === 'end' ? 'commit' : 'rollback'
      return first === 'commit' || first === 'end' ? 'commit' : 'rollback'
    }
    default:
      return undefined
  }
}

/**
 * The first word of `text`, lower-cased, after white space and comments: the hot path of every lone
 * query, so it scans character codes and allocates nothing but the word.
 */
function firstWord(text: string): string | undefined {
  const n = text.length
  let i = 0
  for (;;) {
    while (i < n && isSpaceCode(text.charCodeAt(i))) i++
    if (text.startsWith('--', i)) {
      const end = text.indexOf('\n', i)
      if (end === -1) return undefined
      i = end + 1
    } else if (text.startsWith('/*', i)) {
      i = skipBlockComment(text, i)
    } else {
      break
    }
  }
  let end = i
  while (end < n && isWordCode(text.charCodeAt(end))) end++
  return end === i ? undefined : text.slice(i, end).toLowerCase()
}

function isSpaceCode(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13 || c === 12
}

// A-Z, a-z, 0-9, _, $ and anything beyond ASCII: what the lexer reads as part of a word.
function isWordCode(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 || c === 36 || c >= 128
}

/**
 * The leading keywords of each statement in `text` (empty statements dropped). A statement whose
 * first word is not a keyword (a parenthesis, say) gets an empty head.
 */
function statementHeads(text: string): string[][] {
  const heads: string[][] = []
  const lexer = new Lexer(text)
  let head: string[] = []
  let started = false
  let open = true // still reading the statement's leading words
  // SQL-standard function bodies (CREATE FUNCTION ... BEGIN ATOMIC ... END): their semicolons do
  // not end the statement. As psql does, count BEGIN (and CASE inside one) against END.
  let creating = false
  let depth = 0
  let previous: string | undefined
  for (let token = lexer.next(); token !== undefined; token = lexer.next()) {
    if (token.kind === 'semicolon' && depth === 0) {
      if (started) heads.push(head)
      head = []
      started = false
      open = true
      creating = false
      previous = undefined
      continue
    }
    if (!started) creating = token.kind === 'word' && token.value === 'create'
    started = true
    if (token.kind !== 'word') {
      open = false
      previous = undefined
      continue
    }
    const word = token.value
    if (open && head.length < HEAD_WORDS) head.push(word)
    else open = false
    if (creating) {
      if (word === 'atomic' && previous === 'begin') depth++
      else if (word === 'case' && depth > 0) depth++
      else if (word === 'end' && depth > 0) depth--
    }
    previous = word
  }
  if (started) heads.push(head)
  if (lexer.unterminated) heads.push([])
  return heads
}

type Token = { kind: 'word'; value: string } | { kind: 'semicolon' } | { kind: 'other' }

const WORD_START = /[A-Za-z_\u0080-\uffff]/
const WORD_CHAR = /[A-Za-z0-9_$\u0080-\uffff]/
const SPACE = new Set([' ', '\t', '\n', '\r', '\f'])

/** Splits SQL into words, semicolons and everything else, skipping literals and comments. */
class Lexer {
  readonly #text: string
  #at = 0
  /** A dollar-quoted body never ended. */
  unterminated = false

  constructor(text: string) {
    this.#text = text
  }

  next(): Token | undefined {
    const text = this.#text
    const n = text.length
    while (this.#at < n) {
      const i = this.#at
      const c = text[i]!
      if (SPACE.has(c)) {
        this.#at++
        continue
      }
      if (c === '-' && text[i + 1] === '-') {
        const end = text.indexOf('\n', i)
        this.#at = end === -1 ? n : end + 1
        continue
      }
      if (c === '/' && text[i + 1] === '*') {
        this.#at = skipBlockComment(text, i)
        continue
      }
      if (c === ';') {
        this.#at++
        return { kind: 'semicolon' }
      }
      if (c === "'") {
        this.#at = skipQuoted(text, i, "'", false)
        return { kind: 'other' }
      }
      if (c === '"') {
        this.#at = skipQuoted(text, i, '"', false)
        return { kind: 'other' }
      }
      if (c === '$') {
        const match = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i, i + 66))
        if (match) {
          const tag = match[0]
          const end = text.indexOf(tag, i + tag.length)
          // Unterminated: the rest is one token, and the text counts as several statements so
          // that the server judges it on the safe path.
          this.#at = end === -1 ? n : end + tag.length
          if (end === -1) this.unterminated = true
          return { kind: 'other' }
        }
        this.#at++
        return { kind: 'other' }
      }
      if (WORD_START.test(c)) {
        let end = i + 1
        while (end < n && WORD_CHAR.test(text[end]!)) end++
        // E'...' (and e'...'): a string with backslash escapes, not a word.
        if (end === i + 1 && (c === 'E' || c === 'e') && text[end] === "'") {
          this.#at = skipQuoted(text, end, "'", true)
          return { kind: 'other' }
        }
        this.#at = end
        return { kind: 'word', value: text.slice(i, end).toLowerCase() }
      }
      this.#at++
      return { kind: 'other' }
    }
    return undefined
  }
}

function skipQuoted(text: string, start: number, quote: string, backslashEscapes: boolean): number {
  let i = start + 1
  while (i < text.length) {
    const c = text[i]
    if (backslashEscapes && c === '\\') {
      i += 2
      continue
    }
    if (c === quote) {
      if (text[i + 1] === quote) {
        i += 2 // doubled quote
        continue
      }
      return i + 1
    }
    i++
  }
  return text.length
}

function skipBlockComment(text: string, start: number): number {
  let depth = 0
  let i = start
  while (i < text.length) {
    if (text[i] === '/' && text[i + 1] === '*') {
      depth++
      i += 2
    } else if (text[i] === '*' && text[i + 1] === '/') {
      depth--
      i += 2
      if (depth === 0) return i
    } else {
      i++
    }
  }
  return text.length
}
