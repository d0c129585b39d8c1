"""The README, BENCHMARKS.md and docs/*.md hold together: every relative link reaches a file of the
repository (and, for `page.md#anchor`, a heading of that page), nothing points outside the repository,
and the README stays a start page of at most 200 lines.

Pure Python on the Markdown text, no JAX: milliseconds. Absolute http(s) links are not fetched. The
checker itself is tested on pages written for the purpose, so a checker that finds nothing fails too.
"""
import glob
import os
import re
import unicodedata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 200

_FENCE = re.compile(r'^\s*(```|~~~)')
# [text](target) and ![alt](target); the text may hold one level of brackets ([`a[0]`](x.md)).
_INLINE_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+"[^"]*")?\s*\)')
_REFERENCE_LINK = re.compile(r'^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)', re.MULTILINE)
_CODE_SPAN = re.compile(r'(`+)(.+?)\1')
_HEADING = re.compile(r'^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$')
# A relative path that climbs out of the directory it starts from: `../x`, not `.../x` or `a/../b`.
_CLIMB = re.compile(r'(?<![\w.])\.\./')
_SCHEME = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*:')


def doc_pages(root=ROOT):
  """The pages whose links are checked: README.md, BENCHMARKS.md and docs/*.md."""
  pages = [os.path.join(root, 'README.md'), os.path.join(root, 'BENCHMARKS.md')]
  pages += sorted(glob.glob(os.path.join(root, 'docs', '*.md')))
  return [p for p in pages if os.path.isfile(p)]


def _outside_fences(text):
  """The lines that are not inside fenced code blocks (a link there is code, not a link)."""
  lines, fenced = [], False
  for line in text.splitlines():
    if _FENCE.match(line):
      fenced = not fenced
      continue
    if not fenced:
      lines.append(line)
  return lines


def links(text):
  """Every link target of a page: inline links, images and reference definitions, outside code."""
  prose = '\n'.join(_CODE_SPAN.sub('', line) for line in _outside_fences(text))
  found = [m.group(1) for m in _INLINE_LINK.finditer(prose)]
  found += [m.group(1) for m in _REFERENCE_LINK.finditer(prose)]
  return [t[1:-1] if t.startswith('<') else t for t in found]


def slug(heading):
  """GitHub's anchor for a heading: its text without Markdown, lowercase, punctuation dropped (letters,
  digits, '_' and '-' stay), each space a '-'."""
  text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link's text only
  text = re.sub(r'<[^>]+>', '', text)  # HTML tags
  text = text.replace('`', '').lower().strip()
  kept = ''.join(c for c in text if c in ' -_' or unicodedata.category(c)[0] in 'LN')
  return kept.replace(' ', '-')


def anchors(text):
  """The anchors of a page's headings, with GitHub's -1, -2 for repeated ones."""
  seen, result = {}, set()
  for line in _outside_fences(text):
    m = _HEADING.match(line)
    if not m:
      continue
    base = slug(m.group(2))
    n = seen.get(base, 0)
    seen[base] = n + 1
    result.add(base if n == 0 else f'{base}-{n}')
  return result


def _read(path):
  with open(path, encoding='utf-8') as f:
    return f.read()


def link_problems(page, root=ROOT):
  """What is wrong with the links of one page: one line per broken link, none when all resolve."""
  text = _read(page)
  problems = []
  for target in links(text):
    if not target or _SCHEME.match(target) or target.startswith('//'):
      if target.startswith('file:'):
        problems.append(f'{target}: a file: link points outside the repository')
      continue  # http(s), mailto: not fetched here
    path, _, anchor = target.partition('#')
    if path.startswith('/'):
      problems.append(f'{target}: an absolute path; link relative to the page')
      continue
    resolved = os.path.realpath(os.path.join(os.path.dirname(page), path)) if path else page
    if os.path.commonpath([resolved, os.path.realpath(root)]) != os.path.realpath(root):
      problems.append(f'{target}: points outside the repository')
      continue
    if not os.path.exists(resolved):
      problems.append(f'{target}: no such file')
      continue
    if anchor:
      if not resolved.endswith('.md') or not os.path.isfile(resolved):
        problems.append(f'{target}: an anchor into a file that is not a Markdown page')
      elif anchor not in anchors(_read(resolved)):
        problems.append(f'{target}: {os.path.relpath(resolved, root)} has no heading with anchor #{anchor}')
  return problems


def outside_paths(page):
  """Lines (commands and prose alike) that name a path outside the repository: `../` outside link
  targets (commands run from the repository root, so `../x` is outside it) and the shared folder."""
  found = []
  for number, line in enumerate(_read(page).splitlines(), 1):
    if 'shared/data' in line or 'shared/tools' in line or '/work/' in line:
      found.append(f'line {number}: {line.strip()}')
      continue
    without_links = _INLINE_LINK.sub('', line)
    if _CLIMB.search(without_links):
      found.append(f'line {number}: {line.strip()}')
  return found


def _name(page):
  return os.path.relpath(page, ROOT)


@pytest.mark.parametrize('page', doc_pages(), ids=_name)
def test_every_relative_link_resolves(page):
  problems = link_problems(page)
  assert not problems, f'{_name(page)}:\n' + '\n'.join(problems)


@pytest.mark.parametrize('page', doc_pages(), ids=_name)
def test_nothing_points_outside_the_repository(page):
  found = outside_paths(page)
  assert not found, f'{_name(page)} names paths outside the repository:\n' + '\n'.join(found)


def test_readme_is_a_start_page():
  with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
    lines = f.read().splitlines()
  assert len(lines) <= README_MAX_LINES, f'README.md has {len(lines)} lines; the reference goes in docs/'


def test_readme_links_every_docs_page():
  """The README's "where to read more" reaches every page of docs/ (and the checker sees its links)."""
  targets = {t.partition('#')[0] for t in links(_read(os.path.join(ROOT, 'README.md')))}
  pages = {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md'))}
  assert pages, 'no docs/*.md found'
  assert pages - targets == set()
  assert 'BENCHMARKS.md' in targets


def test_slugs_follow_github():
  assert slug('4. Training recipe') == '4-training-recipe'
  assert slug('CPU: densenet_bc_100 against PyTorch') == 'cpu-densenet_bc_100-against-pytorch'
  assert slug("The paper's experiments") == 'the-papers-experiments'
  assert slug('Datasets (`config.dataset.name`)') == 'datasets-configdatasetname'
  assert slug('What happens when...') == 'what-happens-when'
  assert anchors('# A\n## A\n```\n# not a heading\n```\n') == {'a', 'a-1'}


def test_the_checker_finds_broken_links(tmp_path):
  """A page with one good link of each kind and one broken link of each kind: only the broken ones are
  reported, so the tests above can fail."""
  (tmp_path / 'docs').mkdir()
  (tmp_path / 'docs' / 'other.md').write_text('# Other page\n\n## A section\n')
  (tmp_path / 'figure.png').write_bytes(b'')
  page = tmp_path / 'docs' / 'page.md'
  page.write_text("""# Page
[good](other.md) [good anchor](other.md#a-section) [here](#page) ![img](../figure.png)
[web](https://example.com/x) `[in code](missing_in_code.md)`
[missing](missing.md) [bad anchor](other.md#no-such-section) [bad here](#nowhere)
[up and out](../../outside.md) ![missing image](figure.png)
[ref]: gone.md
```
[in a fence](fenced_missing.md)
```
""")
  problems = link_problems(str(page), root=str(tmp_path))
  assert [p.split(':')[0] for p in problems] == [
      'missing.md', 'other.md#no-such-section', '#nowhere', '../../outside.md', 'figure.png', 'gone.md']


def test_the_checker_finds_paths_outside(tmp_path):
  page = tmp_path / 'page.md'
  page.write_text("""See [the README](../README.md) and `.../x` and ..._b_driver.sh.
    python launch/main.py --config.dataset.train_path=../shared/data/cifar10_train_10k.npz
    python tools/peer.py --peer=../elsewhere/peer.py
    python launch/main.py --config.dataset.train_path=/path/to/cifar10_train_10k.npz
""")
  assert [p.split(':')[0] for p in outside_paths(str(page))] == ['line 2', 'line 3']
