// The listener page: a client of the public XRPC API, nothing else. Every value from the API is hostile text and
// goes into the page as text nodes or inside a URL built here, never parsed as markup.
"use strict";

const LIMIT = 50;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function xrpc(method, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") query.set(key, String(value));
  }
  const response = await fetch(`/xrpc/${method}?${query}`, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const error = new Error((body && body.message) || `${method} failed (${response.status})`);
    error.xrpc = (body && body.error) || "Error";
    throw error;
  }
  return body;
}

// at://<did>/<collection>/<rkey> -> [did, collection, rkey]
function splitUri(uri) {
  const parts = String(uri).replace(/^at:\/\//, "").split("/");
  return parts.length === 3 ? parts : null;
}

function audioPath(trackUri) {
  const parts = splitUri(trackUri);
  if (!parts) return null;
  return `/audio/${encodeURIComponent(parts[0])}/${encodeURIComponent(parts[2])}`;
}

function artistHref(did) {
  return `#/artist/${encodeURIComponent(did)}`;
}

function listHref(uri) {
  return `#/list/${encodeURIComponent(uri)}`;
}

function showMessage(text) {
  const box = document.getElementById("message");
  box.textContent = text || "";
  box.hidden = !text;
}

function play(track, row) {
  const player = document.getElementById("player");
  const src = audioPath(track.uri);
  if (!src) return;
  for (const node of document.querySelectorAll(".track.playing")) node.classList.remove("playing");
  if (row) row.classList.add("playing");
  player.dataset.uri = track.uri;
  player.src = src;
  document.getElementById("now-playing").textContent = `${track.title} — ${track.artist}`;
  player.play().catch((err) => showMessage(`Could not play: ${err.message}`));
}

function trackRow(track) {
  const author = track.author || {};
  const handle = author.handle && author.handle !== "handle.invalid" ? `@${author.handle}` : author.did;
  const row = el("li", { class: "track", "data-uri": track.uri });
  const button = el("button", { type: "button", class: "play", "aria-label": `Play ${track.title}` }, "▶ Play");
  button.addEventListener("click", () => play(track, row));
  const sub = el(
    "div",
    { class: "sub" },
    track.artist,
    track.album ? ` · ${track.album}` : "",
    " · ",
    el("a", { class: "artist-link", href: artistHref(author.did) }, handle || "unknown"),
    ` · ♥ ${track.likeCount}`,
  );
  row.append(button, el("div", { class: "meta" }, el("div", { class: "title" }, track.title), sub));
  return row;
}

function trackList(tracks, emptyText) {
  if (!tracks.length) return el("p", { class: "muted empty" }, emptyText);
  return el("ol", { class: "tracks" }, ...tracks.map(trackRow));
}

function moreButton(load) {
  const button = el("button", { type: "button", class: "more" }, "More");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await load(button);
    } catch (err) {
      showMessage(err.message);
      button.disabled = false;
    }
  });
  return button;
}

async function pagedTracks(container, method, params, emptyText) {
  const first = await xrpc(method, { ...params, limit: LIMIT });
  const list = trackList(first.tracks, emptyText);
  container.append(list);
  let cursor = first.cursor;
  const addMore = () => {
    if (!cursor || !first.tracks.length) return;
    const button = moreButton(async () => {
      const next = await xrpc(method, { ...params, limit: LIMIT, cursor });
      for (const t of next.tracks) list.append(trackRow(t));
      cursor = next.cursor;
      button.remove();
      addMore();
    });
    container.append(button);
  };
  addMore();
}

async function latestView(view) {
  view.append(el("h1", {}, "Latest tracks"));
  await pagedTracks(view, "fm.plyr.getLatestTracks", {}, "Nothing indexed yet.");
}

async function searchView(view, q) {
  document.getElementById("q").value = q;
  view.append(el("h1", {}, "Search: ", el("span", { id: "search-term" }, q)));
  await pagedTracks(view, "fm.plyr.searchTracks", { q }, "No tracks match.");
}

async function artistView(view, actor) {
  const profile = await xrpc("fm.plyr.getActorProfile", { actor });
  const name = profile.displayName || (profile.handle !== "handle.invalid" ? profile.handle : profile.did);
  const card = el(
    "div",
    { class: "profile" },
    el("h1", { id: "artist-name" }, name),
    el("div", { class: "muted" }, profile.handle === "handle.invalid" ? profile.did : `@${profile.handle}`),
    profile.bio ? el("p", { class: "bio" }, profile.bio) : null,
    el(
      "div",
      { class: "counts" },
      el("span", {}, `${profile.trackCount} tracks`),
      el("span", {}, `${profile.listCount} lists`),
      el("span", {}, `${profile.likeCount} likes`),
    ),
  );
  view.append(card);
  const lists = await xrpc("fm.plyr.getActorLists", { actor: profile.did, limit: LIMIT });
  if (lists.lists.length) {
    view.append(
      el("h2", {}, "Lists"),
      el(
        "ul",
        { class: "lists" },
        ...lists.lists.map((l) =>
          el(
            "li",
            { class: "list" },
            el("a", { class: "list-link", href: listHref(l.uri) }, l.name || "(untitled)"),
            el("span", { class: "muted" }, `${l.listType || "list"} · ${l.itemCount} items`),
          ),
        ),
      ),
    );
  }
  view.append(el("h2", {}, "Tracks"));
  await pagedTracks(view, "fm.plyr.getActorTracks", { actor: profile.did }, "No tracks yet.");
}

async function listView(view, uri) {
  const { list } = await xrpc("fm.plyr.getList", { uri });
  const author = list.author || {};
  view.append(
    el("h1", { id: "list-name" }, list.name || "(untitled)"),
    el(
      "p",
      { class: "muted" },
      `${list.listType || "list"} by `,
      el("a", { href: artistHref(author.did) }, author.handle || author.did),
      ` · ${list.itemCount} items`,
    ),
  );
  const tracks = (list.items || []).filter((item) => item.track).map((item) => item.track);
  view.append(trackList(tracks, "This list has no playable tracks."));
}

async function route() {
  const view = document.getElementById("view");
  view.replaceChildren();
  showMessage("");
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  view.dataset.route = parts[0] || "latest";
  try {
    if (parts[0] === "search") await searchView(view, new URLSearchParams(query || "").get("q") || "");
    else if (parts[0] === "artist" && parts[1]) await artistView(view, decodeURIComponent(parts[1]));
    else if (parts[0] === "list" && parts[1]) await listView(view, decodeURIComponent(parts[1]));
    else await latestView(view);
  } catch (err) {
    showMessage(`${err.xrpc ? err.xrpc + ": " : ""}${err.message}`);
  }
  view.dataset.loaded = hash;
}

function init() {
  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = document.getElementById("q").value.trim();
    if (q) location.hash = `#/search?${new URLSearchParams({ q })}`;
  });
  const player = document.getElementById("player");
  player.addEventListener("error", () => showMessage("This track could not be played."));
  window.addEventListener("hashchange", route);
  route();
}

init();
