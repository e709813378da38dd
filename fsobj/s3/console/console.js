// fsobj's web console: an ordinary S3 client in the page. Every request is signed here
// (AWS Signature Version 4) with the access key the user signed in with, and the server
// checks it by the same rules as any other S3 request; the secret lives in this tab's
// sessionStorage alone. Names from the store reach the page as text, never as markup.
"use strict";

// -- SHA-256 and HMAC, in plain JavaScript: crypto.subtle exists only in secure contexts
// (https, localhost), and a console served over plain http on a LAN must sign too.

const K = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

const ror = (x, n) => (x >>> n) | (x << (32 - n));

function sha256(data) {
  const padded = new Uint8Array(((data.length + 9 + 63) >> 6) << 6);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(data.length / 0x20000000));
  view.setUint32(padded.length - 4, (data.length * 8) >>> 0);
  const h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
  const w = new Uint32Array(64);
  for (let block = 0; block < padded.length; block += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(block + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, k] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      [k, g, f, e, d, c, b, a] = [g, f, e, (d + t1) >>> 0, c, b, a, (t1 + t2) >>> 0];
    }
    [a, b, c, d, e, f, g, k].forEach((value, i) => { h[i] = (h[i] + value) >>> 0; });
  }
  const digest = new Uint8Array(32);
  h.forEach((value, i) => new DataView(digest.buffer).setUint32(i * 4, value));
  return digest;
}

function hmac(key, message) {
  const block = new Uint8Array(64);
  block.set(key.length > 64 ? sha256(key) : key);
  const inner = new Uint8Array(64 + message.length);
  const outer = new Uint8Array(96);
  for (let i = 0; i < 64; i++) {
    inner[i] = block[i] ^ 0x36;
    outer[i] = block[i] ^ 0x5c;
  }
  inner.set(message, 64);
  outer.set(sha256(inner), 64);
  return sha256(outer);
}

const utf8 = (text) => new TextEncoder().encode(text);
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

// -- Signature Version 4 -----------------------------------------------------------------

const REGION = "us-east-1";
const UNSIGNED = "UNSIGNED-PAYLOAD";

function encode(text, keepSlashes) {
  const encoded = encodeURIComponent(text).replace(
    /[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  return keepSlashes ? encoded.replace(/%2F/g, "/") : encoded;
}

function queryString(query) {
  const pairs = Object.entries(query).map(([k, v]) => [encode(k), encode(String(v))]);
  pairs.sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
  return pairs.map(([k, v]) => `${k}=${v}`).join("&");
}

function objectPath(bucket, key) {
  return "/" + (bucket ? encode(bucket) : "") + (key ? "/" + encode(key, true) : "");
}

function signingKey(secret, date, service) {
  let key = hmac(utf8("AWS4" + secret), utf8(date));
  for (const part of [REGION, service, "aws4_request"]) key = hmac(key, utf8(part));
  return key;
}

// The signature of a request: `signed` maps the lowercase names of the headers it covers
// (host among them) to their values; `payload` is the body's hex SHA-256 or UNSIGNED.
function signature(method, path, query, signed, payload, stamp, service) {
  const { secret } = credentials();
  const names = Object.keys(signed).sort();
  const canonical = [
    method, path, queryString(query),
    names.map((n) => `${n}:${String(signed[n]).trim()}\n`).join(""),
    names.join(";"), payload,
  ].join("\n");
  const scope = `${stamp.slice(0, 8)}/${REGION}/${service}/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", stamp, scope, hex(sha256(utf8(canonical)))].join("\n");
  return { scope, names: names.join(";"), value: hex(hmac(signingKey(secret, stamp.slice(0, 8), service), utf8(toSign))) };
}

const timestamp = () => new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");

// The headers of a signed request: those given, x-amz-date, and the authorization.
function signedHeaders(method, path, query, headers, service) {
  const stamp = timestamp();
  const all = { ...headers, "x-amz-date": stamp };
  all["x-amz-content-sha256"] = all["x-amz-content-sha256"] || UNSIGNED;
  const signed = { host: location.host };
  for (const [name, value] of Object.entries(all)) if (name.startsWith("x-amz-")) signed[name] = value;
  const sig = signature(method, path, query, signed, all["x-amz-content-sha256"], stamp, service);
  all.authorization = `AWS4-HMAC-SHA256 Credential=${credentials().id}/${sig.scope}, ` +
    `SignedHeaders=${sig.names}, Signature=${sig.value}`;
  return all;
}

// A URL that GETs `path` for five minutes, signed in its query (a download).
function presigned(path, query) {
  const stamp = timestamp();
  const scope = `${stamp.slice(0, 8)}/${REGION}/s3/aws4_request`;
  const full = {
    ...query,
    "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
    "X-Amz-Credential": `${credentials().id}/${scope}`,
    "X-Amz-Date": stamp,
    "X-Amz-Expires": "300",
    "X-Amz-SignedHeaders": "host",
  };
  const sig = signature("GET", path, full, { host: location.host }, UNSIGNED, stamp, "s3");
  return `${path}?${queryString({ ...full, "X-Amz-Signature": sig.value })}`;
}

class S3Error extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

function xml(request) {
  return new DOMParser().parseFromString(request.responseText, "application/xml");
}

const text = (node, tag) => node.getElementsByTagName(tag)[0]?.textContent ?? "";

// One signed request; resolves to the XMLHttpRequest once answered 2xx, or rejects with
// the error S3 (or IAM) answered.
function send({ method, path = "/", query = {}, headers = {}, body = null, service = "s3", progress }) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    const qs = queryString(query);
    request.open(method, path + (qs ? "?" + qs : ""));
    for (const [name, value] of Object.entries(signedHeaders(method, path, query, headers, service))) {
      request.setRequestHeader(name, value);
    }
    if (progress) request.upload.onprogress = (event) => progress(event.loaded);
    request.onload = () => {
      if (request.status < 300) return resolve(request);
      const answer = request.responseText ? xml(request) : null;
      reject(new S3Error(answer ? text(answer, "Code") : request.status, answer ? text(answer, "Message") : request.statusText));
    };
    request.onerror = () => reject(new S3Error("NetworkError", "the server could not be reached"));
    request.send(body);
  });
}

// -- the page ----------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 50;
const PART_SIZE = 8 * 1024 * 1024; // larger files go up in parts of this size

function credentials() {
  return JSON.parse(sessionStorage.getItem("fsobj-key") || "null");
}

function say(message, isError = false) {
  $("status").textContent = message;
  $("status").className = isError ? "error" : "";
}

function show(section) {
  for (const id of ["sign-in", "buckets", "objects", "keys"]) $(id).hidden = id !== section;
  $("nav").hidden = section === "sign-in";
}

function cell(row, content, className) {
  const td = row.insertCell();
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  if (className) td.className = className;
  return td;
}

function link(label, href) {
  const a = document.createElement("a");
  a.textContent = label;
  a.href = href;
  return a;
}

function button(label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", () => action().catch((error) => say(error.message, true)));
  return b;
}

function size(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = Number(bytes), unit = 0;
  while (n >= 1024 && unit < units.length - 1) { n /= 1024; unit++; }
  return unit ? `${n.toFixed(1)} ${units[unit]}` : `${n} B`;
}

const when = (iso) => iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
const bucketHash = (bucket, prefix = "") => `#/b/${encodeURIComponent(bucket)}/${encodeURIComponent(prefix)}`;

// -- buckets -----------------------------------------------------------------------------

async function showBuckets() {
  show("buckets");
  const answer = xml(await send({ method: "GET" }));
  const rows = $("bucket-rows");
  rows.replaceChildren();
  for (const bucket of answer.getElementsByTagName("Bucket")) {
    const name = text(bucket, "Name");
    const row = rows.insertRow();
    row.dataset.bucket = name;
    cell(row, link(name, bucketHash(name)));
    cell(row, when(text(bucket, "CreationDate")));
    cell(row, button("Delete", async () => {
      if (!confirm(`Delete the bucket ${name}?`)) return;
      await send({ method: "DELETE", path: objectPath(name) });
      say(`Deleted the bucket ${name}.`);
      await showBuckets();
    }));
  }
}

$("new-bucket").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("bucket-name").value.trim();
  send({ method: "PUT", path: objectPath(name) })
    .then(() => { say(`Created the bucket ${name}.`); $("bucket-name").value = ""; return showBuckets(); })
    .catch((error) => say(error.message, true));
});

// -- objects of a bucket, a folder (prefix) at a time, a page at a time -------------------

const place = { bucket: "", prefix: "", tokens: [], next: null };

async function showObjects(bucket, prefix, token = null) {
  show("objects");
  Object.assign(place, { bucket, prefix });
  const where = $("where");
  where.replaceChildren(link("Buckets", "#/"), " / ", link(bucket, bucketHash(bucket)));
  let above = "";
  for (const part of prefix.split("/").filter(Boolean)) {
    above += part + "/";
    where.append(" / ", link(part, bucketHash(bucket, above)));
  }
  const versions = $("show-versions").checked;
  const query = { delimiter: "/", prefix, "max-keys": PAGE_SIZE };
  if (versions) {
    query.versions = "";
    if (token) Object.assign(query, { "key-marker": token[0], "version-id-marker": token[1] });
  } else {
    query["list-type"] = "2";
    if (token) query["continuation-token"] = token;
  }
  const answer = xml(await send({ method: "GET", path: objectPath(bucket), query }));
  const rows = $("object-rows");
  rows.replaceChildren();
  for (const folder of answer.getElementsByTagName("CommonPrefixes")) {
    const name = text(folder, "Prefix");
    const row = rows.insertRow();
    row.dataset.key = name;
    cell(row, link(name.slice(prefix.length), bucketHash(bucket, name)));
    cell(row, "folder", "size");
    cell(row, "");
    cell(row, "");
  }
  const items = versions
    ? [...answer.documentElement.children].filter((e) => e.localName === "Version" || e.localName === "DeleteMarker")
    : [...answer.getElementsByTagName("Contents")];
  for (const item of items) addObjectRow(rows, item, versions);
  const truncated = text(answer, "IsTruncated") === "true";
  place.next = !truncated ? null : versions
    ? [text(answer, "NextKeyMarker"), text(answer, "NextVersionIdMarker")]
    : text(answer, "NextContinuationToken");
  place.tokens = token ? place.tokens : [];
  $("next-page").disabled = !truncated;
  $("first-page").disabled = !token;
}

function addObjectRow(rows, item, versions) {
  const key = text(item, "Key");
  const versionId = versions ? text(item, "VersionId") : null;
  const marker = item.localName === "DeleteMarker";
  const row = rows.insertRow();
  row.dataset.key = key;
  let label = key.slice(place.prefix.length);
  if (versions) label += `  (${marker ? "delete marker" : "version"} ${versionId}${text(item, "IsLatest") === "true" ? ", latest" : ""})`;
  cell(row, label);
  cell(row, marker ? "" : size(text(item, "Size")), "size");
  cell(row, when(text(item, "LastModified")));
  const actions = cell(row, "");
  if (!marker) actions.append(button("Download", async () => download(key, versionId)));
  if (!versions) {
    actions.append(" ", button("Delete", async () => {
      if (!confirm(`Delete ${key}?`)) return;
      await send({ method: "DELETE", path: objectPath(place.bucket, key) });
      say(`Deleted ${key}.`);
      await showObjects(place.bucket, place.prefix);
    }));
  }
}

async function download(key, versionId) {
  const name = key.split("/").pop();
  const query = { "response-content-disposition": `attachment; filename*=UTF-8''${encode(name)}` };
  if (versionId) query.versionId = versionId;
  const a = link(name, presigned(objectPath(place.bucket, key), query));
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

$("next-page").addEventListener("click", () => {
  place.tokens.push(place.next);
  showObjects(place.bucket, place.prefix, place.next).catch((error) => say(error.message, true));
});
$("first-page").addEventListener("click", () => {
  showObjects(place.bucket, place.prefix).catch((error) => say(error.message, true));
});
$("show-versions").addEventListener("change", () => {
  showObjects(place.bucket, place.prefix).catch((error) => say(error.message, true));
});

// -- uploads: by the file picker or dropped, each with a progress bar ------------------

async function upload(file) {
  const { bucket, prefix } = place;
  const key = prefix + file.name;
  const line = document.createElement("div");
  line.className = "transfer";
  line.dataset.key = key;
  const bar = document.createElement("progress");
  bar.max = file.size || 1;
  bar.value = 0;
  const state = document.createElement("span");
  state.textContent = "uploading";
  line.append(key, bar, state);
  $("uploads").append(line);
  const progress = (sent) => { bar.value = sent; state.textContent = `${Math.floor((100 * sent) / bar.max)}%`; };
  const headers = { "content-type": file.type || "application/octet-stream" };
  try {
    if (file.size <= PART_SIZE) {
      await send({ method: "PUT", path: objectPath(bucket, key), headers, body: file, progress });
    } else {
      await uploadInParts(file, objectPath(bucket, key), headers, progress);
    }
    progress(bar.max);
    state.textContent = "done";
    line.classList.add("done");
  } catch (error) {
    state.textContent = "failed";
    throw error;
  }
}

async function uploadInParts(file, path, headers, progress) {
  const created = xml(await send({ method: "POST", path, query: { uploads: "" }, headers }));
  const uploadId = text(created, "UploadId");
  try {
    const parts = [];
    for (let number = 1, start = 0; start < file.size; number++, start += PART_SIZE) {
      const answer = await send({
        method: "PUT", path, query: { partNumber: number, uploadId },
        body: file.slice(start, start + PART_SIZE), progress: (sent) => progress(start + sent),
      });
      parts.push(`<Part><PartNumber>${number}</PartNumber><ETag>${answer.getResponseHeader("ETag")}</ETag></Part>`);
    }
    const body = `<CompleteMultipartUpload>${parts.join("")}</CompleteMultipartUpload>`;
    await send({ method: "POST", path, query: { uploadId }, body, headers: { "content-type": "application/xml" } });
  } catch (error) {
    await send({ method: "DELETE", path, query: { uploadId } }).catch(() => {});
    throw error;
  }
}

async function uploadAll(files) {
  for (const file of files) {
    try {
      await upload(file);
      say(`Uploaded ${file.name}.`);
    } catch (error) {
      say(`${file.name}: ${error.message}`, true);
    }
  }
  await showObjects(place.bucket, place.prefix);
}

$("upload").addEventListener("change", (event) => {
  uploadAll([...event.target.files]).catch((error) => say(error.message, true));
  event.target.value = "";
});
const zone = $("dropzone");
zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  zone.classList.remove("over");
  uploadAll([...event.dataTransfer.files]).catch((error) => say(error.message, true));
});

// -- a bucket's ACL ----------------------------------------------------------------------

async function showAcl() {
  $("acl").hidden = false;
  const answer = xml(await send({ method: "GET", path: objectPath(place.bucket), query: { acl: "" } }));
  const rows = $("grant-rows");
  rows.replaceChildren();
  for (const grant of answer.getElementsByTagName("Grant")) {
    const grantee = grant.getElementsByTagName("Grantee")[0];
    const row = rows.insertRow();
    cell(row, text(grantee, "URI") || text(grantee, "DisplayName") || text(grantee, "ID"));
    cell(row, text(grant, "Permission"));
  }
}

$("show-acl").addEventListener("click", () => showAcl().catch((error) => say(error.message, true)));
$("acl-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const canned = $("canned").value;
  send({ method: "PUT", path: objectPath(place.bucket), query: { acl: "" }, headers: { "x-amz-acl": canned } })
    .then(() => { say(`The ACL of ${place.bucket} is now ${canned}.`); return showAcl(); })
    .catch((error) => say(error.message, true));
});

// -- access keys (administrators), through IAM's API -----------------------------------

async function iam(action, params = {}) {
  const body = new URLSearchParams({ Action: action, Version: "2010-05-08", ...params }).toString();
  const headers = {
    "content-type": "application/x-www-form-urlencoded; charset=utf-8",
    "x-amz-content-sha256": hex(sha256(utf8(body))),
  };
  return xml(await send({ method: "POST", path: "/", body, headers, service: "iam" }));
}

async function showKeys() {
  show("keys");
  const rows = $("key-rows");
  rows.replaceChildren();
  const answer = await iam("ListAccessKeys");
  for (const member of answer.getElementsByTagName("member")) {
    const id = text(member, "AccessKeyId");
    const row = rows.insertRow();
    row.dataset.key = id;
    cell(row, id);
    cell(row, text(member, "UserName"));
    cell(row, when(text(member, "CreateDate")));
    cell(row, button("Delete", async () => {
      if (!confirm(`Delete the access key ${id}?`)) return;
      await iam("DeleteAccessKey", { AccessKeyId: id });
      say(`Deleted the access key ${id}.`);
      await showKeys();
    }));
  }
}

$("new-key").addEventListener("submit", (event) => {
  event.preventDefault();
  iam("CreateAccessKey", { UserName: $("key-user").value.trim() })
    .then((answer) => {
      $("new-secret").textContent = `New key ${text(answer, "AccessKeyId")} for ${text(answer, "UserName")}; ` +
        `its secret, shown once: ${text(answer, "SecretAccessKey")}`;
      return showKeys();
    })
    .catch((error) => say(error.message, true));
});

// -- signing in and out, and which view the address asks for ---------------------------

$("sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("fsobj-key", JSON.stringify({ id: $("key-id").value.trim(), secret: $("secret").value }));
  $("secret").value = "";
  send({ method: "GET" })
    .then(() => { say("Signed in."); return route(); })
    .catch((error) => { sessionStorage.removeItem("fsobj-key"); say(error.message, true); });
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem("fsobj-key");
  say("Signed out.");
  route();
});

async function route() {
  const signedIn = credentials();
  if (!signedIn) return show("sign-in");
  $("whoami").textContent = `key ${signedIn.id}`;
  $("acl").hidden = true;
  const [, view, bucket, prefix] = location.hash.split("/");
  if (view === "keys") return showKeys();
  if (view === "b" && bucket) return showObjects(decodeURIComponent(bucket), decodeURIComponent(prefix || ""));
  return showBuckets();
}

window.addEventListener("hashchange", () => route().catch((error) => say(error.message, true)));
route().catch((error) => say(error.message, true));
