// DCloud console: a small terminal emulator (a VT100/xterm subset) for the shell panel.
// It draws a grid of cells into a <pre>, understands the control sequences a shell
// and common tools send (cursor moves, erase, colours, scroll regions, the alternate
// screen), and turns key presses into the bytes a terminal sends. No dependencies.
"use strict";

const TERM_COLORS = ["#1d232b", "#c0392b", "#2e8b57", "#b8860b", "#2f6fcf", "#9b59b6", "#16a0a0", "#d0d4da",
  "#5b6573", "#e74c3c", "#3fbf6f", "#e0b020", "#5b9bff", "#c27ade", "#2fd0d0", "#ffffff"];

class Term {
  constructor(el, cols, rows) {
    this.el = el; this.cols = cols; this.rows = rows;
    this.decoder = new TextDecoder();
    this.onData = () => {};
    this.scrollback = [];
    this.reset();
    el.tabIndex = 0;
    el.setAttribute("role", "application");
    el.addEventListener("keydown", (ev) => this.key(ev));
    el.addEventListener("focus", () => this.draw());
    el.addEventListener("blur", () => this.draw());
    el.addEventListener("paste", (ev) => { ev.preventDefault(); this.onData(ev.clipboardData.getData("text")); });
    this.draw();
  }
  reset() {
    this.attr = { fg: null, bg: null, bold: false, inverse: false };
    this.x = 0; this.y = 0; this.top = 0; this.bottom = this.rows - 1;
    this.grid = this.blankScreen(); this.saved = null; this.alt = null;
    this.state = "text"; this.params = ""; this.cursorOn = true;
  }
  blankCell() { return { ch: " ", fg: this.attr ? this.attr.fg : null, bg: this.attr ? this.attr.bg : null, bold: false, inverse: false }; }
  blankLine() { return Array.from({ length: this.cols }, () => this.blankCell()); }
  blankScreen() { return Array.from({ length: this.rows }, () => this.blankLine()); }
  // Feeds output bytes (Uint8Array) or text.
  write(data) {
    const text = typeof data === "string" ? data : this.decoder.decode(data, { stream: true });
    for (const ch of text) this.feed(ch);
    this.scheduleDraw();
  }
  feed(ch) {
    const c = ch.codePointAt(0);
    if (this.state === "esc") return this.escape(ch);
    if (this.state === "csi") {
      if (c >= 0x40 && c <= 0x7e) { this.state = "text"; this.csi(ch, this.params); this.params = ""; }
      else this.params += ch;
      return;
    }
    if (this.state === "osc") { if (c === 7) this.state = "text"; else if (c === 0x1b) this.state = "osc-esc"; return; }
    if (this.state === "osc-esc") { this.state = "text"; return; }
    if (this.state === "charset") { this.state = "text"; return; }
    switch (c) {
      case 0x1b: this.state = "esc"; return;
      case 0x0d: this.x = 0; return;
      case 0x0a: case 0x0b: case 0x0c: this.lineFeed(); return;
      case 0x08: if (this.x > 0) this.x--; return;
      case 0x09: this.x = Math.min(this.cols - 1, (Math.floor(this.x / 8) + 1) * 8); return;
      case 0x07: return;
      default:
        if (c < 0x20) return;
        if (this.x >= this.cols) { this.x = 0; this.lineFeed(); }
        this.grid[this.y][this.x] = { ch, fg: this.attr.fg, bg: this.attr.bg, bold: this.attr.bold, inverse: this.attr.inverse };
        this.x++;
    }
  }
  escape(ch) {
    this.state = "text";
    if (ch === "[") { this.state = "csi"; this.params = ""; }
    else if (ch === "]") this.state = "osc";
    else if (ch === "(" || ch === ")") this.state = "charset";
    else if (ch === "7") this.saved = { x: this.x, y: this.y };
    else if (ch === "8") { if (this.saved) { this.x = this.saved.x; this.y = this.saved.y; } }
    else if (ch === "D") this.lineFeed();
    else if (ch === "M") this.reverseIndex();
    else if (ch === "E") { this.x = 0; this.lineFeed(); }
    else if (ch === "c") { this.reset(); }
  }
  lineFeed() {
    if (this.y === this.bottom) this.scrollUp(1);
    else if (this.y < this.rows - 1) this.y++;
  }
  reverseIndex() {
    if (this.y === this.top) this.scrollDown(1); else if (this.y > 0) this.y--;
  }
  scrollUp(n) {
    for (let i = 0; i < n; i++) {
      const gone = this.grid.splice(this.top, 1)[0];
      if (this.top === 0 && !this.alt) { this.scrollback.push(gone); if (this.scrollback.length > 1000) this.scrollback.shift(); }
      this.grid.splice(this.bottom, 0, this.blankLine());
    }
  }
  scrollDown(n) {
    for (let i = 0; i < n; i++) { this.grid.splice(this.bottom, 1); this.grid.splice(this.top, 0, this.blankLine()); }
  }
  csi(final, raw) {
    const priv = raw.startsWith("?");
    const ps = (priv ? raw.slice(1) : raw).split(";").map((p) => (p === "" ? NaN : Number(p)));
    const p = (i, d) => (Number.isNaN(ps[i]) || ps[i] === undefined ? d : ps[i]);
    const clampY = (y) => Math.max(0, Math.min(this.rows - 1, y));
    const clampX = (x) => Math.max(0, Math.min(this.cols - 1, x));
    switch (final) {
      case "A": this.y = clampY(this.y - p(0, 1)); break;
      case "B": case "e": this.y = clampY(this.y + p(0, 1)); break;
      case "C": case "a": this.x = clampX(this.x + p(0, 1)); break;
      case "D": this.x = clampX(this.x - p(0, 1)); break;
      case "E": this.x = 0; this.y = clampY(this.y + p(0, 1)); break;
      case "F": this.x = 0; this.y = clampY(this.y - p(0, 1)); break;
      case "G": case "`": this.x = clampX(p(0, 1) - 1); break;
      case "d": this.y = clampY(p(0, 1) - 1); break;
      case "H": case "f": this.y = clampY(p(0, 1) - 1); this.x = clampX(p(1, 1) - 1); break;
      case "J": this.eraseDisplay(p(0, 0)); break;
      case "K": this.eraseLine(p(0, 0)); break;
      case "L": for (let i = 0; i < p(0, 1); i++) { this.grid.splice(this.bottom, 1); this.grid.splice(this.y, 0, this.blankLine()); } break;
      case "M": for (let i = 0; i < p(0, 1); i++) { this.grid.splice(this.y, 1); this.grid.splice(this.bottom, 0, this.blankLine()); } break;
      case "P": { const row = this.grid[this.y]; row.splice(this.x, p(0, 1)); while (row.length < this.cols) row.push(this.blankCell()); break; }
      case "@": { const row = this.grid[this.y]; for (let i = 0; i < p(0, 1); i++) row.splice(this.x, 0, this.blankCell()); row.length = this.cols; break; }
      case "X": for (let i = 0; i < p(0, 1) && this.x + i < this.cols; i++) this.grid[this.y][this.x + i] = this.blankCell(); break;
      case "S": this.scrollUp(p(0, 1)); break;
      case "T": this.scrollDown(p(0, 1)); break;
      case "r": this.top = clampY(p(0, 1) - 1); this.bottom = clampY(p(1, this.rows) - 1); this.x = 0; this.y = this.top; break;
      case "s": this.saved = { x: this.x, y: this.y }; break;
      case "u": if (this.saved) { this.x = this.saved.x; this.y = this.saved.y; } break;
      case "m": this.sgr(ps); break;
      case "h": case "l": if (priv) this.mode(ps, final === "h"); break;
      case "n": if (p(0, 0) === 6) this.onData("\x1b[" + (this.y + 1) + ";" + (this.x + 1) + "R"); break;
      default: break;
    }
  }
  mode(ps, on) {
    for (const m of ps) {
      if (m === 25) this.cursorOn = on;
      else if (m === 1049 || m === 47 || m === 1047) {
        if (on && !this.alt) { this.alt = { grid: this.grid, x: this.x, y: this.y }; this.grid = this.blankScreen(); }
        else if (!on && this.alt) { this.grid = this.alt.grid; this.x = this.alt.x; this.y = this.alt.y; this.alt = null; }
      }
    }
  }
  sgr(ps) {
    if (!ps.length || (ps.length === 1 && Number.isNaN(ps[0]))) ps = [0];
    for (let i = 0; i < ps.length; i++) {
      const n = Number.isNaN(ps[i]) ? 0 : ps[i];
      if (n === 0) this.attr = { fg: null, bg: null, bold: false, inverse: false };
      else if (n === 1) this.attr.bold = true;
      else if (n === 22) this.attr.bold = false;
      else if (n === 7) this.attr.inverse = true;
      else if (n === 27) this.attr.inverse = false;
      else if (n >= 30 && n <= 37) this.attr.fg = TERM_COLORS[n - 30];
      else if (n >= 90 && n <= 97) this.attr.fg = TERM_COLORS[n - 90 + 8];
      else if (n === 39) this.attr.fg = null;
      else if (n >= 40 && n <= 47) this.attr.bg = TERM_COLORS[n - 40];
      else if (n >= 100 && n <= 107) this.attr.bg = TERM_COLORS[n - 100 + 8];
      else if (n === 49) this.attr.bg = null;
      else if ((n === 38 || n === 48) && ps[i + 1] === 5) {
        const k = ps[i + 2]; const col = k < 16 ? TERM_COLORS[k] : null;
        if (n === 38) this.attr.fg = col; else this.attr.bg = col;
        i += 2;
      } else if ((n === 38 || n === 48) && ps[i + 1] === 2) {
        const col = "rgb(" + ps[i + 2] + "," + ps[i + 3] + "," + ps[i + 4] + ")";
        if (n === 38) this.attr.fg = col; else this.attr.bg = col;
        i += 4;
      }
    }
  }
  eraseDisplay(mode) {
    if (mode === 2 || mode === 3) { this.grid = this.blankScreen(); return; }
    if (mode === 0) { this.eraseLine(0); for (let y = this.y + 1; y < this.rows; y++) this.grid[y] = this.blankLine(); }
    if (mode === 1) { this.eraseLine(1); for (let y = 0; y < this.y; y++) this.grid[y] = this.blankLine(); }
  }
  eraseLine(mode) {
    const row = this.grid[this.y];
    const [a, b] = mode === 0 ? [this.x, this.cols] : mode === 1 ? [0, this.x + 1] : [0, this.cols];
    for (let x = a; x < b; x++) row[x] = this.blankCell();
  }
  // The text of the screen (and, with `all`, the scrollback above it), trimmed.
  text(all) {
    const lines = (all ? this.scrollback.concat(this.grid) : this.grid).map((r) => r.map((c) => c.ch).join("").replace(/\s+$/, ""));
    return lines.join("\n").replace(/\n+$/, "");
  }
  scheduleDraw() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => { this.pending = false; this.draw(); });
  }
  draw() {
    const frag = document.createDocumentFragment();
    const showCursor = this.cursorOn && document.activeElement === this.el;
    this.grid.forEach((row, y) => {
      let run = null, text = "";
      const flush = () => {
        if (!text) return;
        const span = document.createElement("span");
        span.textContent = text;
        if (run) {
          const fg = run.inverse ? run.bg || "#1d232b" : run.fg, bg = run.inverse ? run.fg || "#d0d4da" : run.bg;
          if (fg) span.style.color = fg;
          if (bg) span.style.background = bg;
          if (run.bold) span.style.fontWeight = "700";
          if (run.cursor) span.className = "cursor";
        }
        frag.append(span); text = "";
      };
      row.forEach((cell, x) => {
        const cursor = showCursor && x === this.x && y === this.y;
        const key = cell.fg || cell.bg || cell.bold || cell.inverse || cursor ? { fg: cell.fg, bg: cell.bg, bold: cell.bold, inverse: cell.inverse, cursor } : null;
        if (JSON.stringify(key) !== JSON.stringify(run)) { flush(); run = key; }
        text += cell.ch;
      });
      flush();
      frag.append("\n");
    });
    this.el.replaceChildren(frag);
  }
  // Key presses → the bytes a VT100/xterm sends.
  key(ev) {
    const map = { Enter: "\r", Backspace: "\x7f", Tab: "\t", Escape: "\x1b", ArrowUp: "\x1b[A", ArrowDown: "\x1b[B",
      ArrowRight: "\x1b[C", ArrowLeft: "\x1b[D", Home: "\x1b[H", End: "\x1b[F", Delete: "\x1b[3~", PageUp: "\x1b[5~", PageDown: "\x1b[6~" };
    let out = null;
    if (ev.ctrlKey && !ev.altKey && ev.key.length === 1) {
      const k = ev.key.toLowerCase();
      if (k >= "a" && k <= "z") out = String.fromCharCode(k.charCodeAt(0) - 96);
      else if (k === "[") out = "\x1b";
      else if (k === "c" || k === "v") return;
    } else if (map[ev.key]) out = map[ev.key];
    else if (ev.key.length === 1 && !ev.metaKey) out = (ev.altKey ? "\x1b" : "") + ev.key;
    if (out === null) return;
    ev.preventDefault();
    this.onData(out);
  }
}
