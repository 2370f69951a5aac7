/**
 * POLICY_SETTING_NO_NULLIF (warning): a policy (on any table in the schemas checked) compares with
 * `current_setting(...)` outside `nullif(..., '')`. After a session has used a custom setting it
 * reads '' rather than NULL, so an unset tenant matches rows whose tenant column is '' instead of
 * nothing. Fix: the policy rewritten with `(SELECT nullif(current_setting(...), ''))`.
 */
import type { Rule } from '../rule.js'
import { settingCallsFix, settingCallsOf, settingNames } from '../setting-calls.js'

export const policySettingNoNullif: Rule<'policy', 'POLICY_SETTING_NO_NULLIF'> = {
  code: 'POLICY_SETTING_NO_NULLIF',
  subject: 'policy',
  reads: 'readPolicies: pg_get_expr of pg_policy.polqual and polwithcheck',
  check(policy) {
    const calls = settingCallsOf(policy).filter((c) => !c.nullif)
    if (calls.length === 0) return undefined
    return {
      severity: 'warning',
      code: 'POLICY_SETTING_NO_NULLIF',
      object: policy.object,
      message: `policy ${policy.row.name} on ${policy.label} compares with ${settingNames(calls)} without nullif(..., ''): after a session has used a custom setting it reads '' instead of NULL, so an unset tenant matches rows whose tenant column is '' (and casts fail) instead of matching nothing`,
      fix: settingCallsFix(policy),
    }
  },
}
