// The SQL helpers: policy and role SQL, and identifier quoting. Named re-exports only.
export {
  tenantPolicySql,
  dropTenantPolicySql,
  rolePolicySql,
  dropRolePolicySql,
} from './policy.js'
export type {
  TenantColumnType,
  TenantPolicyOptions,
  RolePolicyOptions,
  DropPolicyOptions,
  PolicyTarget,
} from './policy.js'
export { createTenantRoleSql, dropTenantRoleSql } from './roles.js'
export type { TenantRoleOptions } from './roles.js'
export { quoteIdentifier } from './ident.js'
