/**
 * Every rule of the doctor, by the kind of subject it checks. The order here is the order
 * findings come out in (before errors are put first): keep it stable, users diff the output.
 */
import type { Rule, SubjectKind } from '../rule.js'
import { allowedRoleBypassesRls } from './allowed-role-bypasses-rls.js'
import { allowedRoleNotGranted } from './allowed-role-not-granted.js'
import { functionImmutableReadsSetting } from './function-immutable-reads-setting.js'
import { loginRoleBypassrls } from './login-role-bypassrls.js'
import { loginRoleInheritsTenantRoles } from './login-role-inherits-tenant-roles.js'
import { loginRoleOwnsTable } from './login-role-owns-table.js'
import { loginRoleSuperuser } from './login-role-superuser.js'
import { matviewOverTenantTable } from './matview-over-tenant-table.js'
import { nothingChecked } from './nothing-checked.js'
import { ownerNoForce } from './owner-no-force.js'
import { policyCastPreventsIndex } from './policy-cast-prevents-index.js'
import { policyNoWithCheck } from './policy-no-with-check.js'
import { policySettingBypass } from './policy-setting-bypass.js'
import { policySettingNoInitplan } from './policy-setting-no-initplan.js'
import { policySettingNoNullif } from './policy-setting-no-nullif.js'
import { rlsDisabled } from './rls-disabled.js'
import { rlsNoPolicy } from './rls-no-policy.js'
import { sessionScopeBehindProxy } from './session-scope-behind-proxy.js'
import { sessionScopeTransactionPooling } from './session-scope-transaction-pooling.js'
import { truncateGranted } from './truncate-granted.js'
import { viewNotSecurityInvoker } from './view-not-security-invoker.js'

export type RuleSet = { readonly [K in SubjectKind]: readonly Rule<K, any>[] }

export const RULES: RuleSet = {
  /** The login role itself. */
  login: [loginRoleSuperuser, loginRoleBypassrls],
  /** The roles allow-list, resolved against the database. */
  allowList: [allowedRoleNotGranted, allowedRoleBypassesRls, loginRoleInheritsTenantRoles],
  /** What the tenantColumn and schemas options selected. */
  selection: [nothingChecked],
  /** Each tenant table the login role or an allowed role can reach... */
  table: [rlsDisabled, rlsNoPolicy],
  /** ...then each of those roles' rights on it (roles that bypass RLS are left out). */
  access: [ownerNoForce, loginRoleOwnsTable, truncateGranted],
  /** Each policy in the schemas checked. */
  policy: [policyNoWithCheck, policySettingBypass, policySettingNoNullif, policySettingNoInitplan, policyCastPreventsIndex],
  /** Each readable view or materialized view over tenant tables. */
  view: [matviewOverTenantTable, viewNotSecurityInvoker],
  /** Each IMMUTABLE function that reads a setting. */
  function: [functionImmutableReadsSetting],
  /** The session the doctor ran on. */
  connection: [sessionScopeTransactionPooling, sessionScopeBehindProxy],
}
