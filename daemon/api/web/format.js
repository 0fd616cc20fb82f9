// @ts-check
// Numbers, sizes, durations, dates and paths as the page writes them.

export const number = new Intl.NumberFormat();

/**
 * A count of things: "1 picture", "2 pictures", "1,024 files" (``many``: an irregular plural).
 * @param {number} n
 * @param {string} one
 * @param {string} [many]
 */
export function plural(n, one, many = `${one}s`) {
  return `${number.format(n)} ${n === 1 ? one : many}`;
}

/**
 * Bytes as "1.4 MB".
 * @param {number | null | undefined} n
 */
export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[i]}`;
}

/**
 * Seconds as "850 ms", "12 s", "5 min", "3.5 h" or "4 days".
 * @param {number | null | undefined} s
 */
export function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} days`;
}

/**
 * An ISO time as "5 min ago" within two days, else the local date and time.
 * @param {string | null | undefined} iso
 */
export function fmtWhen(iso) {
  if (!iso) return "never";
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return iso;
  const ago = (Date.now() - when.getTime()) / 1000;
  return ago >= 0 && ago < 172800 ? `${fmtSeconds(ago)} ago` : when.toLocaleString();
}

/**
 * A path's folder and file name.
 * @param {string} path
 * @returns {{folder: string, name: string}}
 */
export function splitPath(path) {
  const cut = path.lastIndexOf("/");
  return { folder: cut > 0 ? path.slice(0, cut) : "/", name: path.slice(cut + 1) };
}
