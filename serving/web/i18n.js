// The phone page's languages, as in the app (factory/i18n.py): the English text is the key, t(text, values)
// returns it in the page's language with its {placeholders} filled. The language: ?lang=zh|en, else the one
// picked with the page's switch (kept in localStorage), else the phone's first language spoken here, else English.
const ZH = {
  "Pick a photo": "选择照片", "Start camera": "打开相机", "Stop camera": "关闭相机", "compare with server": "与服务器对比",
  "Loading the model…": "正在加载模型…", "On this phone:": "在这台手机上：", "Runtime:": "运行时：",
  "(add ?ep=webgpu to try WebGPU)": "（加上 ?ep=webgpu 可试用 WebGPU）", "Send latency to the report": "把延迟发送到报告",
  "model": "模型", "artifact": "导出文件", "task": "任务", "created": "创建时间", "accuracy": "准确率",
  "classes": "类别数", "identities": "身份数", "classification": "图像分类", "detection": "目标检测", "retrieval": "图像检索",
  "ocr": "文字识别", "end-to-end Hmean": "端到端 Hmean", "characters": "字符数",
  "{backend} ({threads} thread(s)), loaded in {ms} ms": "{backend}（{threads} 个线程），加载用时 {ms} 毫秒",
  "Ready: take a photo or start the camera.": "准备就绪：拍一张照片或打开相机。",
  "{ms} ms (median {median} ms over {runs})": "{ms} 毫秒（{runs} 次的中位数 {median} 毫秒）",
  "{fps} FPS": "{fps} 帧/秒", "at": "位置",
  "server error {status}": "服务器错误 {status}",
  "server ({target} {precision}): {what}, {inference} ms inference, {rtt} ms round trip":
    "服务器（{target} {precision}）：{what}，推理 {inference} 毫秒，往返 {rtt} 毫秒",
  "latency sent to the benchmark report ({runs} runs)": "延迟已发送到基准测试报告（{runs} 次）",
  "could not send latency": "无法发送延迟",
  "No camera here: the camera needs HTTPS (serve --https). Use 'Pick a photo'.": "这里无法使用相机：相机需要 HTTPS（serve --https）。请用“选择照片”。",
  "camera: {error}": "相机：{error}", "Could not load the model: {error}": "无法加载模型：{error}",
  "{count} output value(s)": "{count} 个输出值", "{count} prediction(s): {json}": "{count} 个预测：{json}",
  // tasks/detection.js
  "{count} object(s): {counts}": "{count} 个目标：{counts}", "nothing found": "没有找到目标",
  "{count} object(s)": "{count} 个目标", ", best {label} {score}%": "，最好的是 {label} {score}%",
  // tasks/ocr.js
  "{count} line(s) of text": "{count} 行文字", "no text found": "没有找到文字", "Copy all text": "复制全部文字",
  "Copied": "已复制", "detection {det} ms, cropping {crop} ms, recognition {rec} ms": "检测 {det} 毫秒，裁剪 {crop} 毫秒，识别 {rec} 毫秒",
  // tasks/retrieval.js
  "gallery": "图库", "{index} ({items} items)": "{index}（{items} 项）", "searched on this phone ({items} vectors, {size})": "在这台手机上检索（{items} 个向量，{size}）",
  "searched on the server ({items} items, {kind})": "在服务器上检索（{items} 项，{kind}）",
  "Gallery {index}:v{version}, {where}": "图库 {index}:v{version}，{where}", "; last search {ms} ms.": "；上次检索 {ms} 毫秒。",
  "No gallery built with this model yet: only the embedding is shown. Build one with `edgefactory index build MODEL --gallery FOLDER --name NAME`, then reload.":
    "这个模型还没有建图库：只显示特征向量。用 `edgefactory index build MODEL --gallery FOLDER --name NAME` 建一个，然后刷新页面。",
  "{label} (similarity {score})": "{label}（相似度 {score}）", "embedding {dim}-d": "{dim} 维特征向量",
};
const CATALOGS = { en: {}, zh: ZH };
const NAMES = { en: "English", zh: "中文" };

function chosen() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked in CATALOGS) return asked;
  try {
    const kept = localStorage.getItem("edgefactory-lang");
    if (kept in CATALOGS) return kept;
  } catch { /* storage may be off (private mode): the phone's languages decide */ }
  const spoken = (navigator.languages || [navigator.language || "en"]).map((l) => l.toLowerCase().split("-")[0]);
  return spoken.find((l) => l in CATALOGS) || "en";
}

export const lang = chosen();

export function t(text, values = {}) {
  const template = CATALOGS[lang][text] || text;
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

// the page's fixed words (elements marked data-i18n) in the page's language, and the switch to the other one
export function translatePage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n || el.textContent.trim());
  const other = lang === "zh" ? "en" : "zh";
  const button = document.getElementById("lang");
  if (!button) return;
  button.textContent = NAMES[other];
  button.addEventListener("click", () => {
    try { localStorage.setItem("edgefactory-lang", other); } catch { /* the URL carries it */ }
    const url = new URL(location.href);
    url.searchParams.set("lang", other);
    location.replace(url);
  });
}
