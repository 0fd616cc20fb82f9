// @ts-check
// The shapes of the daemon's answers that the page reads, and of the page's own query parts:
// types only, for // @ts-check (the API's full description is /openapi.json).
export {};

/**
 * A picture as /search results and /duplicates members name it.
 * @typedef {object} Item
 * @property {string} image the path
 * @property {string} [path_base64] the path's exact bytes, for a name that is not UTF-8
 * @property {string} [hash] the content hash: a thumbnail URL with it names one picture
 * @property {number} [score] cosine similarity (search results)
 * @property {Level} [match] how well it matches the query (search results; absent from an older daemon)
 * @property {string | null} [taken] when the photo was taken (ISO), or its file date
 * @property {string | null} [taken_from] "mtime" when that is the file date
 * @property {string | null} [camera]
 * @property {number | null} [width]
 * @property {number | null} [height]
 * @property {number | null} [size] bytes (duplicates members)
 */

/** A result's match level, strongest first: same, similar, related, weak. @typedef {"same" | "similar" | "related" | "weak"} Level */

/** @typedef {{kind: "text", weight: number, label: string, text: string}} TextPart */
/** @typedef {{kind: "image", weight: number, label: string, image: string, path_base64?: string, hash?: string}} ImagePart */
/** An upload: its content hash once the daemon answered (the address names it so). @typedef {{kind: "upload", weight: number, label: string, file: File, preview: string, dataUrl: Promise<string>, hash?: string}} UploadPart */
/** A picture by its content hash alone (an upload, from the address after a reload). @typedef {{kind: "hash", weight: number, label: string, hash: string}} HashPart */
/** One part of the query: a weight below 0 searches away from it. @typedef {TextPart | ImagePart | UploadPart | HashPart} Part */

/**
 * What /search answers.
 * @typedef {object} SearchAnswer
 * @property {Item[]} [results]
 * @property {string} [folder]
 * @property {string} [extractor]
 * @property {{kind: string, hash?: string}} [query] what was searched; an upload's content hash
 * @property {number} [offset]
 * @property {number | null} [next_offset] the next page's offset; null: no more
 */

/** @typedef {{phase?: string, done?: number, total?: number, progress?: number, extractor?: string}} Computing */
/** @typedef {"identical" | "copies" | "similar"} Tier */
/**
 * One file of a duplicate group: a picture, whether it is the suggested keeper, how closely it
 * matches (framing: the pixel check, null when it could not run) and how many other files have its bytes.
 * @typedef {Item & {size: number, keep?: boolean, framing?: number | null, same_bytes?: number}} Member
 */
/**
 * A group of one tier: its suggested keeper (the first member) and why.
 * @typedef {object} Group
 * @property {Tier} kind
 * @property {number} files
 * @property {number} similarity
 * @property {string} [keep] the suggested keeper's path
 * @property {string} [keep_reason] why, in words ("most pixels: 4032x3024 (next 3024x2268)")
 * @property {Member[]} members
 */
/**
 * A page of /duplicates (or, with HTTP 202, how far the comparison is).
 * @typedef {object} DuplicatesAnswer
 * @property {number} offset
 * @property {number | null} next_offset
 * @property {number} total
 * @property {Group[]} groups
 * @property {string} kind
 * @property {number} threshold
 * @property {string} extractor
 * @property {Record<Tier, number>} [tiers] groups per tier (after the folder filter)
 * @property {{copies: number | null, similar: number, framing: number}} [thresholds]
 * @property {boolean} [stale]
 * @property {Computing} [computing]
 */

/** @typedef {"trash" | "move" | "link"} Action */
/** @typedef {{keep: string, others: string[]}} Resolution */
/**
 * One file of a resolve: done, planned (a dry run) or skipped, and where it went.
 * @typedef {{image: string, keep: string, state: "done" | "planned" | "skipped", to: string | null, reason: string | null}} ResolvedFile
 */
/**
 * What POST /duplicates/resolve answers.
 * @typedef {object} ResolveAnswer
 * @property {string | number | null} undo the id POST /duplicates/undo takes (null: a dry run, or nothing done)
 * @property {Action} action
 * @property {boolean} dry_run
 * @property {string | null} to
 * @property {number} done
 * @property {number} skipped
 * @property {ResolvedFile[]} files
 */
/**
 * What POST /duplicates/undo answers.
 * @typedef {{undo: string | number, restored: number, skipped: number, files: {image: string, state: string, reason: string | null}[]}} UndoAnswer
 */

/**
 * A model and its index, from /stats.
 * @typedef {object} Extractor
 * @property {string} model
 * @property {boolean} [text] whether it has a text encoder
 * @property {{used?: string, asked?: string, reason?: string, engine?: string}} [precision]
 * @property {string} [device]
 * @property {number} [dim]
 * @property {string} [mode]
 * @property {number} [vectors]
 * @property {number} [fresh]
 * @property {number} [tombstones]
 * @property {boolean} [building]
 * @property {string | null} [last_build]
 * @property {number | null} [last_build_seconds]
 * @property {number | null} [recall_at_10]
 * @property {number} [target_recall]
 * @property {boolean | null} [target_met]
 * @property {string | null} [recall_note]
 * @property {number | null} [ef]
 * @property {number | null} [search_k]
 * @property {number | null} [p50_ms]
 * @property {number | null} [p95_ms]
 * @property {ModelChange | null} [change] a new model embedding the library while this one serves
 */

/**
 * A model change in progress (/stats.extractors[NAME].change): the old model serves until the new
 * one has embedded every picture, then the index switches at once.
 * @typedef {object} ModelChange
 * @property {string} from the serving model's id
 * @property {string} to the new model's id
 * @property {"embedding" | "switching" | "failed"} state
 * @property {number} done pictures with the new model's vector
 * @property {number} total
 * @property {number | null} [rate] pictures a second
 * @property {number | null} [eta_seconds]
 * @property {string} [started_at]
 * @property {string | null} [error] why it failed, or why searches have a gap
 * @property {number | null} [old_model_bytes] memory the old model holds meanwhile
 */

/** @typedef {{id: string | number, folder: string, state: string, progress: number, done: number, found: number, seconds: number, outcomes?: Record<string, number>, error?: string | null}} Job */
/**
 * A watched folder, as /folders lists it.
 * @typedef {object} Folder
 * @property {string} folder
 * @property {string} [path_base64]
 * @property {"config" | "added"} source from the settings file (or --watch), or added at run time
 * @property {string} state "starting", "watching", "polling" or "offline"
 * @property {number} files pictures indexed at or below it
 * @property {number} failed
 * @property {number} pending
 * @property {Job | null} job its current or last folder job
 * @property {string | null} added_at
 * @property {boolean} removable
 * @property {string | null} error
 */
/** @typedef {{folders: Folder[], roots: string[], anywhere: boolean}} FoldersAnswer */
/** @typedef {{path: string, parent: string | null, folders: {name: string, path: string, watched: boolean}[], truncated: boolean}} BrowseAnswer */
/** @typedef {{folder: string, source: string, already: boolean, job: Job | null}} FolderAdded */

/** @typedef {{folder: string, state: string, scanning?: boolean, observer?: string | null, reason?: string | null, since?: string | null, events?: number}} Watch */
/** @typedef {{total?: number, by_reason?: Record<string, number>, recent?: {path: string, reason: string, detail?: string | null}[]}} Failures */

/**
 * A configured model that could not load, and what to do about it (/stats).
 * @typedef {object} Fallback
 * @property {string} running
 * @property {string} configured
 * @property {string} reason
 * @property {{file: string, bytes: number | null, size?: string | null, url: string} | null} [fetch] what to download
 * @property {string[]} [advice] the whole advice, sentence by sentence (as the log and the CLI say it)
 */

/**
 * What /stats answers, as far as the page reads it.
 * @typedef {object} Stats
 * @property {Record<string, Extractor>} extractors
 * @property {string | null} [active_extractor]
 * @property {number | null} [images]
 * @property {number} pending
 * @property {boolean} [ready]
 * @property {string} [phase]
 * @property {Job[]} [jobs]
 * @property {Watch[]} [watch]
 * @property {{state: string, error?: string | null}} [storage]
 * @property {{images_per_second?: number}} [indexing]
 * @property {Failures} [failed]
 * @property {{count: number, bytes: number, max_bytes: number}} [thumbnails]
 * @property {{computing?: Computing | null}} [duplicates]
 * @property {Fallback | null} [fallback]
 * @property {number} [uptime_s]
 * @property {string} [version]
 */
