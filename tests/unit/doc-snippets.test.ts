/**
 * The documentation's snippet checker (scripts/snippets.mjs, scripts/check-snippets.mjs, `npm run
 * check:docs`): how blocks are found and marked, and that a broken block fails the check with its
 * file and line, a skipped one is counted with its reason.
 */
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, expect, it } from 'vitest'
import { extractBlocks, parseDirective, root } from '../../scripts/snippets.mjs'

it('reads each block with the directive before it, and the expected output of a run block', () => {
  const md = [
    '# Title', //                                 1
    '<!-- snippet: complete, run -->', //         2
    '', //                                        3
    '```ts', //                                   4
    "console.log('hi')", //                       5
    '```', //                                     6
    '```text', //                                 7
    'hi', //                                      8
    '```', //                                     9
    '- a list item:', //                          10
    '  ```typescript', //                         11
    '  const x = 1', //                           12
    '  ```', //                                   13
    '<!-- snippet: prelude=kysely -->', //        14
    '```ts', //                                   15
    'db', //                                      16
    '```', //                                     17
    '<!-- snippet: skip needs a live server -->', // 18
    '```ts', //                                   19
    'nope(', //                                   20
    '```', //                                     21
  ].join('\n')
  const blocks = extractBlocks(md, 'x.md')
  expect(blocks.map((b) => [b.line, b.code])).toEqual([
    [4, "console.log('hi')\n"],
    [11, 'const x = 1\n'],
    [15, 'db\n'],
    [19, 'nope(\n'],
  ])
  expect(blocks[0]!.directive).toMatchObject({ complete: true, run: true })
  expect(blocks[0]!.expected).toBe('hi\n')
  expect(blocks[1]!.directive).toMatchObject({ complete: false, run: false, prelude: undefined, skip: undefined })
  expect(blocks[2]!.directive.prelude).toBe('kysely')
  expect(blocks[3]!.directive.skip).toBe('needs a live server')
})

it('refuses directives that would turn a check off silently', () => {
  expect(() => parseDirective('skip', 'x.md:1')).toThrow(/needs a reason/)
  expect(() => parseDirective('compelte', 'x.md:1')).toThrow(/unknown snippet directive "compelte"/)
  expect(() => parseDirective('run', 'x.md:1')).toThrow(/"run" needs "complete"/)
  expect(() => extractBlocks('<!-- snippet: complete -->\n```sql\nselect 1\n```\n', 'x.md')).toThrow(/x\.md:1: snippet directive before a ```sql block/)
  expect(() => extractBlocks('<!-- snippet: complete -->\ntext\n```ts\n1\n```\n', 'x.md')).toThrow(/not directly before a code block/)
  expect(() => extractBlocks('<!-- snippet: complete, run -->\n```ts\n1\n```\n', 'x.md')).toThrow(/expected output/)
})

const fixture = path.join(root, '.snippets/test-fixture.md')
afterAll(() => fs.rmSync(fixture, { force: true }))

it('fails on a block that does not typecheck under strict, naming its file and line, and counts skipped blocks', { timeout: 60_000 }, async () => {
  fs.mkdirSync(path.dirname(fixture), { recursive: true })
  fs.writeFileSync(
    fixture,
    [
      '<!-- snippet: complete -->', //               1
      '```ts', //                                    2
      'const ok: number = 1', //                     3
      'console.log(ok)', //                          4
      '```', //                                      5
      '```ts', //                                    6
      "function f(x) { return x }", //               7  implicit any: strict refuses it
      '```', //                                      8
      '<!-- snippet: skip not TypeScript at all -->', // 9
      '```ts', //                                    10
      'this is not code', //                         11
      '```', //                                      12
    ].join('\n'),
  )
  const run = promisify(execFile)(process.execPath, [path.join(root, 'scripts/check-snippets.mjs'), '.snippets/test-fixture.md'], { cwd: root })
  const failure = await run.then(() => undefined, (err: { code: number; stdout: string; stderr: string }) => err)
  expect(failure?.code).toBe(1)
  expect(failure?.stdout).toContain('2 TypeScript blocks checked (1 complete, 1 fragments), 1 skipped')
  expect(failure?.stdout).toContain('skipped .snippets/test-fixture.md:10: not TypeScript at all')
  expect(failure?.stderr).toContain('1 block(s) fail to typecheck under strict')
  expect(failure?.stderr).toContain('.snippets/test-fixture.md:6\n')
  expect(failure?.stderr).toMatch(/\.snippets\/test-fixture\.md:7 \(block line 1\): error TS7006/)
})
