/**
 * POLICY_SETTING_NO_INITPLAN (warning): a policy (on any table in the schemas checked) calls
 * `current_setting(...)` outside a `(SELECT ...)` wrapper, so PostgreSQL may evaluate it for every
 * row instead of once per statement (an InitPlan). Fix: the policy rewritten with
 * `(SELECT nullif(current_setting(...), ''))`.
 */
import type { Rule } from '../rule.js'
import { settingCallsFix, settingCallsOf, settingNames } from '../setting-calls.js'

export const policySettingNoInitplan: Rule<'policy', 'POLICY_SETTING_NO_INITPLAN'> = {
  code: 'POLICY_SETTING_NO_INITPLAN',
  subject: 'policy',
  reads: 'readPolicies: pg_get_expr of pg_policy.polqual and polwithcheck',
  check(policy) {
    const calls = settingCallsOf(policy).filter((c) => !c.initplan)
    if (calls.length === 0) return undefined
    return {
      severity: 'warning',
      code: 'POLICY_SETTING_NO_INITPLAN',
      object: policy.object,
      message: `policy ${policy.row.name} on ${policy.label} calls ${settingNames(calls)} outside a (SELECT ...) wrapper: PostgreSQL may evaluate it for every row instead of once per statement (an InitPlan)`,
      fix: settingCallsFix(policy),
    }
  },
}
