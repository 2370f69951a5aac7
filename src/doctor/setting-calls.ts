/**
 * Reading deparsed policy expressions: where a policy calls `current_setting(...)`, whether the
 * call is wrapped in `nullif(..., '')` and in a `(SELECT ...)` subquery, and the expression
 * rewritten with both wrappers. Used by the POLICY_SETTING_NO_NULLIF and
 * POLICY_SETTING_NO_INITPLAN checks, which share their reading and their fix.
 */
import { quoteLiteral } from '../sql/ident.js'
import { names } from './fixes.js'
import type { PolicySubject } from './rule.js'

/** Every `current_setting(...)` call in a policy's USING and WITH CHECK expressions. */
export function settingCallsOf(policy: PolicySubject): SettingCall[] {
  const { qual, with_check } = policy.row
  return [
    ...(qual === null ? [] : findSettingCalls(qual)),
    ...(with_check === null ? [] : findSettingCalls(with_check)),
  ]
}

/** The policy rewritten so that every setting is read as `(SELECT nullif(current_setting(...), ''))`. */
export function settingCallsFix(policy: PolicySubject): string {
  const { qual, with_check } = policy.row
  const rewrite = [
    qual === null ? undefined : `USING (${wrapSettingCalls(qual)})`,
    with_check === null ? undefined : `WITH CHECK (${wrapSettingCalls(with_check)})`,
  ].filter((part) => part !== undefined)
  return `${policy.alter}\n  ${rewrite.join('\n  ')};`
}

/** `current_setting('app.x'), current_setting(...)`, for messages. */
export function settingNames(calls: readonly SettingCall[]): string {
  return names(calls.map((c) => `current_setting(${c.setting === undefined ? '...' : quoteLiteral(c.setting)})`))
}

/** One `current_setting(...)` call in an expression, and what wraps it. */
export interface SettingCall {
  /** The setting name when the first argument is a literal. */
  readonly setting: string | undefined
  /** Inside a `nullif(...)` call. */
  readonly nullif: boolean
  /** Inside a `(SELECT ...)` subquery, which PostgreSQL evaluates once as an InitPlan. */
  readonly initplan: boolean
  /** Offsets of the call (from the function name to its closing parenthesis, exclusive). */
  readonly start: number
  readonly end: number
  /** Offsets of the innermost enclosing `nullif(...)` call, if any. */
  readonly nullifStart: number | undefined
  readonly nullifEnd: number | undefined
}

interface Frame {
  fn: string
  fnStart: number
  select: boolean
  end: number
}

/**
 * Finds every `current_setting(...)` call in a SQL expression as `pg_get_expr` deparses it, and
 * whether it is wrapped in `nullif(...)` and in a `(SELECT ...)` subquery. String literals and
 * quoted identifiers are skipped.
 */
export function findSettingCalls(expr: string): SettingCall[] {
  const stack: Frame[] = []
  const pending: Array<{ call: Omit<SettingCall, 'end' | 'nullifEnd'>; frame: Frame; nullifFrame: Frame | undefined }> = []
  let word = ''
  let wordStart = -1
  let awaitingFirst: Frame | undefined
  let i = 0
  while (i < expr.length) {
    const ch = expr[i]!
    if (/\s/.test(ch)) {
      i++
      continue
    }
    if (ch === "'") {
      const escapes = word === 'e' && wordStart === i - 1
      i = skipString(expr, i, escapes)
      word = ''
      awaitingFirst = undefined
      continue
    }
    if (ch === '"') {
      const start = i
      let name = ''
      i++
      while (i < expr.length) {
        if (expr[i] === '"') {
          if (expr[i + 1] === '"') {
            name += '"'
            i += 2
            continue
          }
          i++
          break
        }
        name += expr[i]
        i++
      }
      word = name
      wordStart = start
      awaitingFirst = undefined
      continue
    }
    if (/[A-Za-z_]/.test(ch)) {
      const start = i
      while (i < expr.length && /[A-Za-z0-9_$.]/.test(expr[i]!)) i++
      const token = expr.slice(start, i)
      const parts = token.split('.')
      word = parts[parts.length - 1]!.toLowerCase()
      wordStart = start
      if (awaitingFirst !== undefined && token.toLowerCase() === 'select') awaitingFirst.select = true
      awaitingFirst = undefined
      continue
    }
    if (ch === '(') {
      const frame: Frame = { fn: word, fnStart: word === '' ? i : wordStart, select: false, end: -1 }
      if (word === 'current_setting') {
        const literal = /^\s*'((?:[^']|'')*)'/.exec(expr.slice(i + 1))
        const nullifFrame = [...stack].reverse().find((f) => f.fn === 'nullif')
        pending.push({
          call: {
            setting: literal ? literal[1]!.replaceAll("''", "'") : undefined,
            nullif: nullifFrame !== undefined,
            initplan: stack.some((f) => f.select),
            start: wordStart,
            nullifStart: nullifFrame?.fnStart,
          },
          frame,
          nullifFrame,
        })
      }
      stack.push(frame)
      awaitingFirst = frame
      word = ''
      i++
      continue
    }
    if (ch === ')') {
      const frame = stack.pop()
      if (frame !== undefined) frame.end = i + 1
      word = ''
      awaitingFirst = undefined
      i++
      continue
    }
    word = ''
    awaitingFirst = undefined
    i++
  }
  return pending.map(({ call, frame, nullifFrame }) => ({
    ...call,
    end: frame.end === -1 ? expr.length : frame.end,
    nullifEnd: nullifFrame === undefined ? undefined : nullifFrame.end === -1 ? expr.length : nullifFrame.end,
  }))
}

function skipString(expr: string, start: number, backslashEscapes: boolean): number {
  let i = start + 1
  while (i < expr.length) {
    const ch = expr[i]
    if (backslashEscapes && ch === '\\') {
      i += 2
      continue
    }
    if (ch === "'") {
      if (expr[i + 1] === "'") {
        i += 2
        continue
      }
      return i + 1
    }
    i++
  }
  return i
}

/**
 * Rewrites an expression so that every `current_setting(...)` call is read as
 * `(SELECT nullif(current_setting(...), ''))`: wrapping what is missing, keeping the rest of the
 * expression as PostgreSQL deparsed it.
 */
export function wrapSettingCalls(expr: string): string {
  const edits: Array<{ start: number; end: number; text: string }> = []
  for (const call of findSettingCalls(expr)) {
    if (call.nullif && call.initplan) continue
    if (!call.nullif) {
      const inner = `nullif(${expr.slice(call.start, call.end)}, '')`
      edits.push({ start: call.start, end: call.end, text: call.initplan ? inner : `(SELECT ${inner})` })
    } else {
      const start = call.nullifStart!
      const end = call.nullifEnd!
      edits.push({ start, end, text: `(SELECT ${expr.slice(start, end)})` })
    }
  }
  // Apply from the end; skip edits that overlap one already applied.
  edits.sort((a, b) => b.start - a.start)
  let out = expr
  let limit = Infinity
  for (const edit of edits) {
    if (edit.end > limit) continue
    out = out.slice(0, edit.start) + edit.text + out.slice(edit.end)
    limit = edit.start
  }
  return out
}
