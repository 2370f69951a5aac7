/** What a `<!-- snippet: ... -->` comment says about the block after it (scripts/snippets.mjs). */
export interface SnippetDirective {
  readonly complete: boolean
  readonly run: boolean
  readonly prelude: string | undefined
  readonly skip: string | undefined
}
/** A fenced code block of the documentation. */
export interface SnippetBlock {
  /** The Markdown file, relative to the repository's root. */
  readonly file: string
  /** The 1-based line of the opening fence. */
  readonly line: number
  readonly lang: string
  readonly code: string
  readonly directive: SnippetDirective
  /** For `run` blocks: the text of the ```text block after it, its expected output. */
  readonly expected?: string
}
export const root: string
export function documentationFiles(): string[]
export function parseDirective(text: string, where: string): SnippetDirective
export function extractBlocks(markdown: string, file: string): SnippetBlock[]
export function documentationBlocks(files?: readonly string[]): SnippetBlock[]
