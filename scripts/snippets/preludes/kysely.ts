// The README's Kysely recipe: the table as Kysely sees it (docs/orms.md#kysely).
import type { Generated as KyselyGenerated } from 'kysely'

interface Database {
  events: { id: KyselyGenerated<string>; org_id: KyselyGenerated<string>; kind: string; payload: string | null }
}
