// Drawing shared by the task twins: a caption bar over the top of the picture, sized for the screen (about
// 18 CSS pixels tall whatever the photo's resolution: a 96 px crop and a 4000 px photo read the same).

export function caption(canvas, text) {
  const px = 18 * canvas.width / (canvas.clientWidth || canvas.width);
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "rgba(0,0,0,0.6)"; ctx.fillRect(0, 0, canvas.width, px * 1.55);
  ctx.fillStyle = "#fff"; ctx.font = `${px}px sans-serif`; ctx.textBaseline = "alphabetic";
  ctx.fillText(text, px / 3, px * 1.1);
}
