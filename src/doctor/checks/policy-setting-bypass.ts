/**
 * POLICY_SETTING_BYPASS (warning): a policy (on any table in the schemas checked) ORs in, at the
 * top level of USING or WITH CHECK, a branch decided by a setting other than the tenant setting: `... OR current_setting('app.bypass_rls', true) = 'on'`. Any session can
 * set any custom setting (`set_config` needs no privilege), so whoever can run SQL as the login
 * role (a bug, an injection, a console) turns isolation off for itself. Fix: the policy without
 * that branch; work that must see every tenant runs as a role with BYPASSRLS (or a role a policy
 * names with `TO`), which a session cannot grant itself.
 *
 * Heuristic (see policy-expr.ts): only top-level OR branches are read, so a bypass nested under an
 * AND is not seen; a branch counts when it calls `current_setting('<another setting>')` with a
 * literal name, names no tenant column, and every one of its top-level AND terms compares a
 * setting with constants only (`= 'on'`, `::boolean`, `IS NOT NULL`): `is_public AND
 * current_setting('app.region') = 'eu'` is not a bypass (the row must be public), nor is
 * `owner_id = current_setting('app.user_id')` (a row rule on another column).
 */
import { quoteLiteral } from '../../sql/ident.js'
import { names, standardCondition } from '../fixes.js'
import { conjuncts, disjuncts, type Span } from '../policy-expr.js'
import type { PolicySubject, Rule } from '../rule.js'
import { findSettingCalls } from '../setting-calls.js'

// Words a comparison of a setting with a constant may hold besides the setting call and literals.
const CONSTANT_WORDS = new Set([
  'select', 'as', 'nullif', 'coalesce', 'lower', 'upper', 'btrim', 'trim', 'is', 'not', 'null',
  'true', 'false', 'and', 'or', 'in', 'any', 'array',
])

/**
 * Whether a term reads a setting and compares it with constants only (no column): every
 * `current_setting(...)` call and literal is blanked, then every word left must be a keyword, a
 * function above, a type after `::` or an alias after `AS`.
 */
function settingOnly(term: string): boolean {
  const calls = findSettingCalls(term)
  if (calls.length === 0) return false
  let text = term
  for (const call of [...calls].sort((a, b) => b.start - a.start)) {
    text = `${text.slice(0, call.start)} S ${text.slice(call.end)}`
  }
  text = text.replace(/'(?:[^']|'')*'/g, ' L ')
  const words = text.match(/::\s*[A-Za-z_][A-Za-z0-9_ ]*|\bAS\s+(?:"(?:[^"]|"")+"|[A-Za-z_]\w*)|"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$.]*/gi) ?? []
  return words.every((w) => w === 'S' || w === 'L' || w.startsWith('::') || /^AS\s/i.test(w) || CONSTANT_WORDS.has(w.toLowerCase()))
}

/** The bypass branches of one expression, and the settings they read. */
function bypassesOf(expr: string, setting: string, columns: readonly string[]): Array<{ branch: Span; settings: string[] }> {
  const branches = disjuncts(expr)
  if (branches.length < 2) return []
  return branches.flatMap((branch) => {
    const calls = findSettingCalls(branch.text)
    const others = calls.map((c) => c.setting).filter((s): s is string => s !== undefined && s !== setting)
    if (others.length === 0 || calls.some((c) => c.setting === setting)) return []
    // Every AND term must compare a setting with constants only: `is_public AND current_setting(...)
    // = 'eu'` still needs the row to be public, and `owner_id = current_setting('app.user_id')`
    // is a row rule, so the setting alone opens nothing.
    if (!conjuncts(expr, branch).every((term) => settingOnly(term.text))) return []
    const words = new Set((branch.text.replace(/'(?:[^']|'')*'/g, '').match(/"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*/g) ?? [])
      .map((w) => (w.startsWith('"') ? w.slice(1, -1).replaceAll('""', '"') : w.toLowerCase())))
    if (columns.some((c) => words.has(c))) return []
    return [{ branch, settings: others }]
  })
}

/** The expression without its bypass branches (the standard condition when nothing is left). */
function without(expr: string, bypass: readonly Span[], policy: PolicySubject, setting: string): string {
  const kept = disjuncts(expr).filter((b) => !bypass.some((x) => x.start === b.start))
  if (kept.length > 0) return kept.map((b) => (kept.length === 1 ? b.text : `(${b.text})`)).join(' OR ')
  return policy.tenantTable === undefined ? 'false' : standardCondition(policy.tenantTable, setting)
}

export const policySettingBypass: Rule<'policy', 'POLICY_SETTING_BYPASS'> = {
  code: 'POLICY_SETTING_BYPASS',
  subject: 'policy',
  reads: 'readPolicies: pg_get_expr of pg_policy.polqual and polwithcheck, split at top-level OR',
  check(policy, { opts }) {
    const { qual, with_check } = policy.row
    const columns = policy.tenantTable?.columns ?? opts.columns
    const inQual = qual === null ? [] : bypassesOf(qual, opts.setting, columns)
    const inCheck = with_check === null ? [] : bypassesOf(with_check, opts.setting, columns)
    if (inQual.length === 0 && inCheck.length === 0) return undefined
    const found = [...inQual, ...inCheck]
    const settings = names(found.flatMap((f) => f.settings).map((s) => `current_setting(${quoteLiteral(s)})`))
    const rewrite = [
      inQual.length === 0 ? undefined : `USING (${without(qual!, inQual.map((f) => f.branch), policy, opts.setting)})`,
      inCheck.length === 0 ? undefined : `WITH CHECK (${without(with_check!, inCheck.map((f) => f.branch), policy, opts.setting)})`,
    ].filter((part) => part !== undefined)
    return {
      severity: 'warning',
      code: 'POLICY_SETTING_BYPASS',
      object: policy.object,
      message: `policy ${policy.row.name} on ${policy.label} ORs in a bypass controlled by ${settings} (${names(found.map((f) => f.branch.text))}): any session can set a custom setting with set_config(), no privilege needed, so whoever runs SQL as the application's role can turn tenant isolation off for itself. Run work that must see every tenant as a separate role with BYPASSRLS instead`,
      fix: [
        '-- work that must see every tenant: a role of its own, e.g. CREATE ROLE maintenance BYPASSRLS',
        `${policy.alter}\n  ${rewrite.join('\n  ')};`,
      ].join('\n'),
    }
  },
}
