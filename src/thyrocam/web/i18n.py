"""Page strings in Spanish and English, and the choice of language for a request.

The page renders in one language on the server (so it reads without JavaScript)
and embeds both tables, so the switch re-labels the page in place without
losing the image or the result on screen.
"""

from __future__ import annotations

from flask import Request

__all__ = [
    "LANGUAGES",
    "DEFAULT_LANGUAGE",
    "LANG_COOKIE",
    "STRINGS",
    "VOCAB_LABELS",
    "pick_language",
]

LANGUAGES: tuple[str, ...] = ("es", "en")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "thyrocam_lang"

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "page_title": "thyrocam · thyroid nodule classification",
        "tagline": "Benign / malignant classification of thyroid nodules on B-mode ultrasound, "
        "explained with Grad-CAM",
        "disclaimer": "Research use only — not a diagnostic device.",
        "disclaimer_detail": "Results are model outputs for research; they must not guide "
        "the care of a patient.",
        "language": "Language",
        "model": "Model",
        "no_model": "No model loaded",
        "image_heading": "Ultrasound image",
        "drop_hint": "Drop an image here, or click to choose one",
        "drop_formats": "PNG, JPEG, BMP, TIFF or WebP",
        "change_image": "Choose another image",
        "roi_hint": "Optional: drag on the image to draw a box around the nodule; the "
        "prediction and the map then use that region.",
        "roi_label": "Nodule box",
        "roi_none": "none (whole frame)",
        "clear_box": "Clear box",
        "preview_unavailable": "This browser cannot preview the file; it can still be analysed.",
        "examples_heading": "Example cases",
        "examples_none": "No example cases configured.",
        "case": "Case",
        "descriptors_heading": "Clinical descriptors",
        "use_clinical": "Use the descriptors in the prediction",
        "use_clinical_off": "Descriptors are ignored: the prediction uses the image only.",
        "not_recorded": "— not recorded —",
        "f_composition": "Composition",
        "f_echogenicity": "Echogenicity",
        "f_margins": "Margins",
        "f_calcifications": "Calcifications",
        "f_sex": "Sex",
        "f_age": "Age (years)",
        "options_heading": "Explanation options",
        "method": "Method",
        "target": "Explain the evidence for",
        "target_auto": "the predicted class",
        "target_malignant": "malignant",
        "target_benign": "benign",
        "predict": "Predict",
        "explain": "Explain prediction (Grad-CAM)",
        "working": "Working…",
        "result_heading": "Result",
        "result_empty": "Choose an image (or an example case) and press Predict.",
        "probability": "probability of malignancy",
        "threshold": "decision threshold",
        "label_benign": "Benign",
        "label_malignant": "Malignant",
        "missing": "Not recorded",
        "tirads_heading": "ACR TI-RADS from the descriptors",
        "feature": "Feature",
        "value": "Value",
        "points": "Points",
        "t_composition": "Composition",
        "t_echogenicity": "Echogenicity",
        "t_shape": "Shape",
        "t_margins": "Margin",
        "t_echogenic_foci": "Echogenic foci",
        "shape_missing": "not recorded",
        "shape_note": "Shape is not recorded: wider-than-tall (0 points) is assumed.",
        "total": "Total",
        "level": "Level",
        "tirads_partial": "Some features were not recorded: the level is a lower bound.",
        "tirads_from_image_partial": "Some features are neither recorded nor taken from the "
        "image: this level is a lower bound.",
        "fna": "FNA if ≥ {fna} cm; follow-up if ≥ {follow} cm",
        "no_fna": "No FNA",
        "cam_heading": "Grad-CAM explanation",
        "original": "Original",
        "overlay": "Heatmap",
        "opacity": "Heatmap opacity",
        "download": "Download PNG",
        "download_dicom": "Download DICOM",
        "cam_note": "Warm colours mark the regions that pushed the score most toward the "
        "explained class. The map shows where the network looked, not a diagnosis.",
        "cam_explained": "Evidence for: {target}",
        "cam_predicted": "the predicted class",
        "cam_all_zero": "The map is empty: no region of the image raised the score for “{target}”.",
        "cam_image_push": "The image alone (descriptors as missing) gives a probability of "
        "malignancy of {p}: it pushed toward {direction}.",
        "cam_see_attributions": "The descriptors moved the score by {delta} (logit units); "
        "see their contributions below.",
        "cam_no_descriptors": "The descriptors were not used: turn them on to see how much "
        "each one moved the score.",
        "cam_image_network": "This map is the image network's own evidence; its weight in the "
        "combined probability is {w}.",
        "cam_image_network_zero": "The probability above comes from the descriptors alone: on "
        "cases held out in training, the image did not add to them beyond chance.",
        "cam_image_network_push": "The image network alone gives a probability of malignancy "
        "of {p}: it pushed toward {direction}.",
        "toward_malignant": "malignant",
        "toward_benign": "benign",
        "attributions_heading": "Descriptor contributions",
        "attributions_note": "How much each descriptor moved the score (exact Shapley values, "
        "logit units): right (red) toward malignant, left (blue) toward benign. A descriptor "
        "not recorded contributes 0.",
        "attributions_axis_benign": "← toward benign",
        "attributions_axis_malignant": "toward malignant →",
        "attributions_total": "All descriptors together",
        "warn_roi": "No nodule box was given: the whole frame was used, but this model was "
        "trained on crops around the nodule. Draw a box for a reliable result.",
        "roi_auto": "proposed by the model (dashed); drag on the image to redraw it",
        "warn_no_nodule": "The model found no nodule: the whole frame was used. Draw a box "
        "for a reliable result.",
        "estimated_heading": "Descriptors read from the image",
        "estimated_entered": "Entered",
        "estimated_image": "From the image (estimate)",
        "estimated_held_out": "Held-out accuracy (commonest value)",
        "held_out_value": "{acc} ({base})",
        "held_out_weak": "not shown better than the commonest value",
        "held_out_unknown": "not measured for this model",
        "estimated_withheld": "Not taken into the TI-RADS estimate: {fields} — on held-out "
        "frames the model did not read them better than always answering the commonest value "
        "beyond chance.",
        "estimated_note": "The model's reading of the image, with its probability: an "
        "estimate, not a radiologist's report.",
        "tirads_from_image": "ACR TI-RADS from the image (estimate)",
        "tirads_from_image_note": "missing features taken from the image: {fields}",
        "target_descriptors": "A descriptor, as seen in the image",
        "err_no_image": "Choose an image first.",
        "err_too_big": "The file is larger than the server accepts ({mb} MB).",
        "err_network": "The server could not be reached.",
        "footer": "Label definition and metrics belong to the loaded run; see its metrics.json.",
    },
    "es": {
        "page_title": "thyrocam · clasificación de nódulos tiroideos",
        "tagline": "Clasificación benigno / maligno de nódulos tiroideos en ecografía modo B, "
        "explicada con Grad-CAM",
        "disclaimer": "Solo para investigación — no es un dispositivo de diagnóstico.",
        "disclaimer_detail": "Los resultados son salidas de un modelo de investigación; no "
        "deben guiar la atención de un paciente.",
        "language": "Idioma",
        "model": "Modelo",
        "no_model": "No hay modelo cargado",
        "image_heading": "Imagen ecográfica",
        "drop_hint": "Arrastre una imagen aquí o haga clic para elegirla",
        "drop_formats": "PNG, JPEG, BMP, TIFF o WebP",
        "change_image": "Elegir otra imagen",
        "roi_hint": "Opcional: arrastre sobre la imagen para marcar un recuadro alrededor del "
        "nódulo; la predicción y el mapa usarán esa región.",
        "roi_label": "Recuadro del nódulo",
        "roi_none": "ninguno (imagen completa)",
        "clear_box": "Borrar recuadro",
        "preview_unavailable": "El navegador no puede mostrar este archivo; aún puede analizarse.",
        "examples_heading": "Casos de ejemplo",
        "examples_none": "No hay casos de ejemplo configurados.",
        "case": "Caso",
        "descriptors_heading": "Descriptores clínicos",
        "use_clinical": "Usar los descriptores en la predicción",
        "use_clinical_off": "Los descriptores se ignoran: la predicción usa solo la imagen.",
        "not_recorded": "— no registrado —",
        "f_composition": "Composición",
        "f_echogenicity": "Ecogenicidad",
        "f_margins": "Márgenes",
        "f_calcifications": "Calcificaciones",
        "f_sex": "Sexo",
        "f_age": "Edad (años)",
        "options_heading": "Opciones de la explicación",
        "method": "Método",
        "target": "Explicar la evidencia de",
        "target_auto": "la clase predicha",
        "target_malignant": "malignidad",
        "target_benign": "benignidad",
        "predict": "Predecir",
        "explain": "Explicar predicción (Grad-CAM)",
        "working": "Procesando…",
        "result_heading": "Resultado",
        "result_empty": "Elija una imagen (o un caso de ejemplo) y pulse Predecir.",
        "probability": "probabilidad de malignidad",
        "threshold": "umbral de decisión",
        "label_benign": "Benigno",
        "label_malignant": "Maligno",
        "missing": "No registrados",
        "tirads_heading": "ACR TI-RADS según los descriptores",
        "feature": "Rasgo",
        "value": "Valor",
        "points": "Puntos",
        "t_composition": "Composición",
        "t_echogenicity": "Ecogenicidad",
        "t_shape": "Forma",
        "t_margins": "Margen",
        "t_echogenic_foci": "Focos ecogénicos",
        "shape_missing": "no registrada",
        "shape_note": "La forma no se registra: se asume más ancho que alto (0 puntos).",
        "total": "Total",
        "level": "Nivel",
        "tirads_partial": "Faltan rasgos: el nivel es una cota inferior.",
        "tirads_from_image_partial": "Hay rasgos ni introducidos ni tomados de la imagen: "
        "este nivel es una cota inferior.",
        "fna": "PAAF si ≥ {fna} cm; seguimiento si ≥ {follow} cm",
        "no_fna": "Sin PAAF",
        "cam_heading": "Explicación Grad-CAM",
        "original": "Original",
        "overlay": "Mapa de calor",
        "opacity": "Opacidad del mapa",
        "download": "Descargar PNG",
        "download_dicom": "Descargar DICOM",
        "cam_note": "Los colores cálidos marcan las regiones que más empujaron la puntuación "
        "hacia la clase explicada. El mapa muestra dónde miró la red, no un diagnóstico.",
        "cam_explained": "Evidencia de: {target}",
        "cam_predicted": "la clase predicha",
        "cam_all_zero": "El mapa está vacío: ninguna región de la imagen aumentó la "
        "puntuación de «{target}».",
        "cam_image_push": "La imagen sola (con los descriptores como no registrados) da una "
        "probabilidad de malignidad de {p}: empujó hacia {direction}.",
        "cam_see_attributions": "Los descriptores movieron la puntuación en {delta} (unidades "
        "logit); vea su contribución más abajo.",
        "cam_no_descriptors": "No se usaron los descriptores: actívelos para ver cuánto movió "
        "la puntuación cada uno.",
        "cam_image_network": "Este mapa muestra la evidencia propia de la red de imagen; su peso "
        "en la probabilidad combinada es {w}.",
        "cam_image_network_zero": "La probabilidad de arriba viene solo de los descriptores: en "
        "los casos apartados durante el entrenamiento, la imagen no les añadió nada más allá "
        "del azar.",
        "cam_image_network_push": "La red de imagen sola da una probabilidad de malignidad de "
        "{p}: empujó hacia {direction}.",
        "toward_malignant": "maligno",
        "toward_benign": "benigno",
        "attributions_heading": "Contribución de los descriptores",
        "attributions_note": "Cuánto movió cada descriptor la puntuación (valores de Shapley "
        "exactos, unidades logit): a la derecha (rojo) hacia maligno, a la izquierda (azul) "
        "hacia benigno. Un descriptor no registrado contribuye 0.",
        "attributions_axis_benign": "← hacia benigno",
        "attributions_axis_malignant": "hacia maligno →",
        "attributions_total": "Todos los descriptores juntos",
        "warn_roi": "No se marcó un recuadro: se usó la imagen completa, pero este modelo se "
        "entrenó con recortes alrededor del nódulo. Marque un recuadro para un resultado "
        "fiable.",
        "roi_auto": "propuesto por el modelo (discontinuo); arrastre sobre la imagen para "
        "trazarlo de nuevo",
        "warn_no_nodule": "El modelo no encontró ningún nódulo: se usó la imagen completa. "
        "Marque un recuadro para un resultado fiable.",
        "estimated_heading": "Descriptores leídos de la imagen",
        "estimated_entered": "Introducido",
        "estimated_image": "De la imagen (estimación)",
        "estimated_held_out": "Acierto en casos reservados (valor más frecuente)",
        "held_out_value": "{acc} ({base})",
        "held_out_weak": "sin ventaja probada sobre el valor más frecuente",
        "held_out_unknown": "no medida para este modelo",
        "estimated_withheld": "No se usan en la estimación TI-RADS: {fields}; en imágenes "
        "reservadas el modelo no los leyó mejor que respondiendo siempre el valor más frecuente, "
        "más allá del azar.",
        "estimated_note": "La lectura de la imagen por el modelo, con su probabilidad: una "
        "estimación, no el informe de un radiólogo.",
        "tirads_from_image": "ACR TI-RADS a partir de la imagen (estimación)",
        "tirads_from_image_note": "rasgos que faltaban, tomados de la imagen: {fields}",
        "target_descriptors": "Un descriptor, tal como se ve en la imagen",
        "err_no_image": "Primero elija una imagen.",
        "err_too_big": "El archivo supera el tamaño que acepta el servidor ({mb} MB).",
        "err_network": "No se pudo contactar con el servidor.",
        "footer": "La definición de la etiqueta y las métricas pertenecen al modelo cargado; "
        "vea su metrics.json.",
    },
}

#: Display labels of the canonical descriptor values (the form submits the canonical value).
VOCAB_LABELS: dict[str, dict[str, dict[str, str]]] = {
    "en": {
        "composition": {
            "cystic": "cystic",
            "predominantly cystic": "predominantly cystic",
            "spongiform": "spongiform",
            "predominantly solid": "predominantly solid",
            "solid": "solid",
            "dense": "dense",
        },
        "echogenicity": {
            "hyperechogenicity": "hyperechoic",
            "isoechogenicity": "isoechoic",
            "hypoechogenicity": "hypoechoic",
            "marked hypoechogenicity": "markedly hypoechoic",
        },
        "margins": {
            "well defined": "well defined",
            "well defined smooth": "well defined, smooth",
            "ill defined": "ill defined",
            "microlobulated": "microlobulated",
            "macrolobulated": "macrolobulated",
            "spiculated": "spiculated",
        },
        "calcifications": {
            "non": "none",
            "macrocalcifications": "macrocalcifications",
            "microcalcifications": "microcalcifications",
        },
        "sex": {"F": "female", "M": "male"},
    },
    "es": {
        "composition": {
            "cystic": "quístico",
            "predominantly cystic": "predominantemente quístico",
            "spongiform": "espongiforme",
            "predominantly solid": "predominantemente sólido",
            "solid": "sólido",
            "dense": "denso",
        },
        "echogenicity": {
            "hyperechogenicity": "hiperecogénico",
            "isoechogenicity": "isoecogénico",
            "hypoechogenicity": "hipoecogénico",
            "marked hypoechogenicity": "marcadamente hipoecogénico",
        },
        "margins": {
            "well defined": "bien definidos",
            "well defined smooth": "bien definidos, lisos",
            "ill defined": "mal definidos",
            "microlobulated": "microlobulados",
            "macrolobulated": "macrolobulados",
            "spiculated": "espiculados",
        },
        "calcifications": {
            "non": "ninguna",
            "macrocalcifications": "macrocalcificaciones",
            "microcalcifications": "microcalcificaciones",
        },
        "sex": {"F": "mujer", "M": "hombre"},
    },
}


def pick_language(request: Request) -> tuple[str, bool]:
    """The page language: ``?lang=``, then the cookie, then ``Accept-Language``.

    Returns:
        ``(lang, explicit)``; ``explicit`` is True when ``?lang=`` chose it (the
        caller then remembers it in the cookie).
    """
    asked = request.args.get("lang", "").strip().lower()
    if asked in LANGUAGES:
        return asked, True
    remembered = request.cookies.get(LANG_COOKIE, "")
    if remembered in LANGUAGES:
        return remembered, False
    best = request.accept_languages.best_match(LANGUAGES)
    return best or DEFAULT_LANGUAGE, False
