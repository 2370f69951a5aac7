/**
 * Reading the structure of a policy expression as `pg_get_expr(polqual, polrelid)` deparses it:
 * its top-level OR branches, each branch's top-level AND terms, and, among those terms, tenant
 * predicates: `<tenant column> = <the tenant setting, or current_user>`. Used by the
 * POLICY_NO_WITH_CHECK fix and the POLICY_SETTING_BYPASS and POLICY_CAST_PREVENTS_INDEX rules.
 *
 * This is a heuristic reading of deparsed text, not a SQL parser. What it relies on: PostgreSQL
 * deparses every AND/OR operand that is not a bare column inside its own parentheses, writes `OR`
 * and `AND` in upper case with a space on each side, writes a comparison as `a = b` with spaces,
 * and leaves a column of the policy's own table unqualified. Its limits: only top-level ORs and
 * ANDs are split (a bypass nested as `a AND (b OR c)` is not seen); only `=` comparisons count as
 * tenant predicates (`IN`, `= ANY`, `IS NOT DISTINCT FROM`, a function wrapping the column are not
 * recognised); the setting side is recognised by a `current_setting('<tenant setting>')` call
 * anywhere in it, whatever else it computes. String literals and quoted identifiers are skipped.
 */
import { findSettingCalls } from './setting-calls.js'

/**
 * A piece of an expression, with its offsets in the whole expression.
 *
 * @example
 * ```ts
 * const span: Span = { text: 'is_public', start: 56, end: 65 }
 * ```
 */
export interface Span {
  readonly text: string
  readonly start: number
  readonly end: number
}

/**
 * A tenant predicate: a tenant column compared with `=` to the tenant setting or current_user.
 *
 * @example
 * ```ts
 * const [p] = tenantPredicates(`((org_id)::text = current_setting('app.tenant_id'::text, true))`, ['org_id'], 'app.tenant_id')
 * p?.columnCast // 'text'
 * ```
 */
export interface TenantPredicate {
  /** The whole comparison, as deparsed. */
  readonly span: Span
  /** The tenant column compared (as named in the catalog). */
  readonly column: string
  /** The type the column is cast to before the comparison (`(org_id)::text`), if it is. */
  readonly columnCast: string | undefined
  /** The tenant setting read on the other side, or undefined for current_user / session_user. */
  readonly setting: string | undefined
}

/** Skips a string literal or quoted identifier starting at `i`; returns the offset after it. */
function skipQuoted(expr: string, i: number): number {
  const quote = expr[i]!
  const backslash = quote === "'" && /[eE]/.test(expr[i - 1] ?? '') && !/[A-Za-z0-9_]/.test(expr[i - 2] ?? '')
  let j = i + 1
  while (j < expr.length) {
    if (backslash && expr[j] === '\\') {
      j += 2
      continue
    }
    if (expr[j] === quote) {
      if (expr[j + 1] === quote) {
        j += 2
        continue
      }
      return j + 1
    }
    j++
  }
  return j
}

/** Visits each offset of `span` at parenthesis depth 0, outside literals and quoted names. */
function eachTopLevel(expr: string, span: Span, visit: (i: number) => void): void {
  let depth = 0
  let i = span.start
  while (i < span.end) {
    const ch = expr[i]!
    if (ch === "'" || ch === '"') {
      i = skipQuoted(expr, i)
      continue
    }
    if (ch === '(') depth++
    else if (ch === ')') depth--
    else if (depth === 0) visit(i)
    i++
  }
}

/** The offset of the parenthesis closing the one at `open`, or -1. */
function closing(expr: string, open: number, end: number): number {
  let depth = 0
  let i = open
  while (i < end) {
    const ch = expr[i]!
    if (ch === "'" || ch === '"') {
      i = skipQuoted(expr, i)
      continue
    }
    if (ch === '(') depth++
    else if (ch === ')' && --depth === 0) return i
    i++
  }
  return -1
}

function spanOf(expr: string, start: number, end: number): Span {
  while (start < end && /\s/.test(expr[start]!)) start++
  while (end > start && /\s/.test(expr[end - 1]!)) end--
  return { text: expr.slice(start, end), start, end }
}

/**
 * `span` without the parentheses that enclose all of it (any number of them).
 *
 * @example
 * ```ts
 * unwrap('((a = 1))', { text: '((a = 1))', start: 0, end: 9 }).text // 'a = 1'
 * ```
 */
export function unwrap(expr: string, span: Span): Span {
  let s = spanOf(expr, span.start, span.end)
  while (s.text.startsWith('(') && closing(expr, s.start, s.end) === s.end - 1) {
    s = spanOf(expr, s.start + 1, s.end - 1)
  }
  return s
}

/** The operands of the top-level `keyword` (OR or AND) in `span`, flattened through parentheses. */
function split(expr: string, span: Span, keyword: 'OR' | 'AND'): Span[] {
  const whole = unwrap(expr, span)
  const cuts: number[] = []
  const token = ` ${keyword} `
  eachTopLevel(expr, whole, (i) => {
    if (expr.startsWith(token, i)) cuts.push(i)
  })
  if (cuts.length === 0) return [whole]
  const parts: Span[] = []
  let from = whole.start
  for (const cut of cuts) {
    parts.push(spanOf(expr, from, cut))
    from = cut + token.length
  }
  parts.push(spanOf(expr, from, whole.end))
  return parts.flatMap((part) => split(expr, part, keyword))
}

/**
 * The top-level OR branches of an expression (one branch when there is no top-level OR).
 *
 * @example
 * ```ts
 * disjuncts('((org_id = x) OR is_public)').map((s) => s.text) // ['org_id = x', 'is_public']
 * ```
 */
export function disjuncts(expr: string): Span[] {
  return split(expr, { text: expr, start: 0, end: expr.length }, 'OR')
}

/**
 * The top-level AND terms of one span of `expr`.
 *
 * @example
 * ```ts
 * const e = '((a = 1) AND (b OR c))'
 * conjuncts(e, disjuncts(e)[0]!).map((s) => s.text) // ['a = 1', 'b OR c']
 * ```
 */
export function conjuncts(expr: string, span: Span): Span[] {
  return split(expr, span, 'AND')
}

const IDENT = String.raw`(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)`
const TYPE = String.raw`[A-Za-z_][A-Za-z0-9_ ."]*(?:\([0-9, ]+\))?(?:\[\])?`
const COLUMN = new RegExp(String.raw`^(?:\((${IDENT})\)|(${IDENT}))(?:::(${TYPE}))?$`)
const USER = /^\(?\s*(?:CURRENT_USER|SESSION_USER)\s*\)?(?:::[A-Za-z_ ]+)?$/i

function identName(quoted: string): string {
  return quoted.startsWith('"') ? quoted.slice(1, -1).replaceAll('""', '"') : quoted.toLowerCase()
}

/** The column a side of a comparison is (maybe cast), when it is one of `columns`. */
function columnOf(text: string, columns: readonly string[]): { column: string; cast: string | undefined } | undefined {
  const match = COLUMN.exec(text)
  if (match === null) return undefined
  const column = identName(match[1] ?? match[2]!)
  if (!columns.includes(column)) return undefined
  return { column, cast: match[3]?.trim() }
}

/**
 * The tenant predicate `term` is, if it is one: `<tenant column> = <side reading the tenant
 * setting>` or `<tenant column> = current_user`, either way round.
 *
 * @example
 * ```ts
 * const e = '(owner_name = CURRENT_USER)'
 * tenantPredicateOf(e, disjuncts(e)[0]!, ['owner_name'], 'app.tenant_id')?.setting // undefined
 * ```
 */
export function tenantPredicateOf(
  expr: string,
  term: Span,
  columns: readonly string[],
  setting: string,
): TenantPredicate | undefined {
  const span = unwrap(expr, term)
  let eq = -1
  let count = 0
  eachTopLevel(expr, span, (i) => {
    if (expr[i] === '=' && expr[i - 1] === ' ' && expr[i + 1] === ' ') {
      eq = i
      count++
    }
  })
  if (count !== 1) return undefined
  const sides = [unwrap(expr, spanOf(expr, span.start, eq)), unwrap(expr, spanOf(expr, eq + 1, span.end))]
  for (const [a, b] of [sides, [sides[1]!, sides[0]!]] as const) {
    const column = columnOf(a.text, columns)
    if (column === undefined) continue
    if (USER.test(b.text)) return { span, column: column.column, columnCast: column.cast, setting: undefined }
    if (findSettingCalls(b.text).some((c) => c.setting === setting)) {
      return { span, column: column.column, columnCast: column.cast, setting }
    }
  }
  return undefined
}

/**
 * Every tenant predicate among the top-level AND terms of the top-level OR branches.
 *
 * @example
 * ```ts
 * tenantPredicates(policy.row.qual ?? '', table.columns, opts.setting).map((p) => p.column)
 * ```
 */
export function tenantPredicates(expr: string, columns: readonly string[], setting: string): TenantPredicate[] {
  return disjuncts(expr).flatMap((branch) =>
    conjuncts(expr, branch)
      .map((term) => tenantPredicateOf(expr, term, columns, setting))
      .filter((p): p is TenantPredicate => p !== undefined),
  )
}

/**
 * `expr` with `span` replaced by `text`.
 *
 * @example
 * ```ts
 * replaceSpan('(a = 1)', { text: 'a = 1', start: 1, end: 6 }, 'b = 2') // '(b = 2)'
 * ```
 */
export function replaceSpan(expr: string, span: Span, text: string): string {
  return expr.slice(0, span.start) + text + expr.slice(span.end)
}

/**
 * `expr` in exactly one pair of parentheses, for `USING (...)` and `WITH CHECK (...)`.
 *
 * @example
 * ```ts
 * parenthesized('((a = 1))') // '(a = 1)'
 * ```
 */
export function parenthesized(expr: string): string {
  return `(${unwrap(expr, { text: expr, start: 0, end: expr.length }).text})`
}
