#!/usr/bin/env python3
"""Generate the starter mapping tables of mapping-tables/ from public facts.

Inputs (read-only):
  shared/fhir-packages/jp-eCSCLINS.r4-1.x.x-temp.tgz  JLAC10 codes of the CLINS core-lab / infection CodeSystems
  shared/terminology/CodeSystem-jp-jfagymedicationallergen{gcm,ycm}-cs-*.json  YJ codes and ingredient names
  shared/terminology/CodeSystem-medis-disease-exchange-5.11.json  (checked for ICD-10 properties)
The curated parts (analyte -> LOINC, ingredient -> RxNorm, ICD-10 starter set) are the lists below;
see mapping-tables/README.md for where each mapping comes from and its limits.

Usage: python3 mapping-tables/tools/gen_tables.py [--shared ../shared]   (run from the repository root)
"""
import argparse, csv, io, json, os, sys, tarfile

VERSION = "1.0.0"
EFFECTIVE = "2026-11-22"
PUBLISHER = "JP-CLINS gateway project (starter set written from public facts; not an official master)"

CORE_CS = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS"
INF_CS = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_InfectionLabo_CS"
JLAC10 = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"
LOINC = "http://loinc.org"
YJ = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code"
GENERAL = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationGeneralOrderCode"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD_JP = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full"
ICD_WHO = "http://hl7.org/fhir/sid/icd-10"
LOCAL = "http://jpfhir.jp/fhir/clins/CodeSystem/JP_CLINS_ObsLabResult_LocalCode_CS"

# JLAC10 material code (characters 10-12 of the 17-digit code) -> specimen class
SP = {"023": "serum", "022": "plasma"}           # LOINC "Serum or Plasma"
BLOOD = {"018": "whole blood", "019": "whole blood (with additive)"}
URINE = {"001": "urine (spot/other)"}

# CLINS item code -> list of (material classes, method filter or None, LOINC code, LOINC long name, equivalence, comment)
# Equivalence is the relation of the LOINC concept to the JLAC10 code: JLAC10 fixes the analytical
# method and LOINC (here) does not, so most rows are "wider".
W = "wider"
ANALYTES = {
    "ALB": [(SP, None, "1751-7", "Albumin [Mass/volume] in Serum or Plasma", W, "")],
    "ALP": [(SP, None, "6768-6", "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma", W, "JLAC10 fixes the method (JSCC/IFCC); LOINC code is method-less")],
    "ALT": [(SP, None, "1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", W, "")],
    "AMY": [(SP, None, "1798-8", "Amylase [Enzymatic activity/volume] in Serum or Plasma", W, "")],
    "APTT": [({"022": "plasma"}, None, "14979-9", "aPTT in Platelet poor plasma by Coagulation assay", W, "")],
    "AST": [(SP, None, "1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", W, "")],
    "BG": [(SP, None, "2345-7", "Glucose [Mass/volume] in Serum or Plasma", W, ""),
           (BLOOD, None, "2339-0", "Glucose [Mass/volume] in Blood", W, "")],
    "BS": [(SP, None, "2345-7", "Glucose [Mass/volume] in Serum or Plasma", W, "fasting/casual timing of the JLAC10 code is not carried by this LOINC code"),
           (BLOOD, None, "2339-0", "Glucose [Mass/volume] in Blood", W, "fasting/casual timing of the JLAC10 code is not carried by this LOINC code")],
    "CBG": [(SP, None, "2345-7", "Glucose [Mass/volume] in Serum or Plasma", W, "fasting/casual timing of the JLAC10 code is not carried by this LOINC code"),
            (BLOOD, None, "2339-0", "Glucose [Mass/volume] in Blood", W, "fasting/casual timing of the JLAC10 code is not carried by this LOINC code")],
    "BLD-ABO": [(BLOOD, None, "883-9", "ABO group [Type] in Blood", W, "")],
    "BLD-Rh": [(BLOOD, None, "10331-7", "Rh [Type] in Blood", W, "")],
    "BNP": [({"022": "plasma"}, None, "30934-4", "Natriuretic peptide B [Mass/volume] in Serum or Plasma", W, "")],
    "BUN": [(SP, None, "3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", W, "")],
    "Ca": [(SP, None, "17861-6", "Calcium [Mass/volume] in Serum or Plasma", W, "")],
    "CK": [(SP, None, "2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma", W, "")],
    "Cl": [(SP, None, "2075-0", "Chloride [Moles/volume] in Serum or Plasma", W, "")],
    "Cre": [(SP, None, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma", W, "")],
    "CRP": [(SP, None, "1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", W, "")],
    "CTG": [(SP, None, "2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", W, "fasting/casual timing of the JLAC10 code is not carried by this LOINC code")],
    "FTG": [(SP, None, "2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", W, "fasting/casual timing of the JLAC10 code is not carried by this LOINC code")],
    "TG": [(SP, None, "2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", W, "")],
    "Cys-C": [(SP, None, "33863-2", "Cystatin C [Mass/volume] in Serum or Plasma", W, "")],
    "D-Bil": [(SP, None, "1968-7", "Bilirubin.direct [Mass/volume] in Serum or Plasma", W, "")],
    "GGT": [(SP, None, "2324-2", "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma", W, "")],
    "Hb": [(BLOOD, None, "718-7", "Hemoglobin [Mass/volume] in Blood", W, "")],
    "HbA1c-NGSP": [(BLOOD, None, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", W, "NGSP value")],
    "HDL-C": [(SP, None, "2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", W, "")],
    "K": [(SP, None, "2823-3", "Potassium [Moles/volume] in Serum or Plasma", W, "")],
    "LD": [(SP, None, "2532-0", "Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma", W, "JLAC10 fixes the method (JSCC/IFCC); LOINC code is method-less")],
    "LDL-C": [(SP, "計算法", "13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", W, "JLAC10 method: calculation"),
              (SP, "!計算法", "18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", W, "JLAC10 method: direct measurement")],
    "Na": [(SP, None, "2951-2", "Sodium [Moles/volume] in Serum or Plasma", W, "")],
    "NT-proBNP": [(SP, None, "33762-6", "Natriuretic peptide.B prohormone N-Terminal [Mass/volume] in Serum or Plasma", W, "")],
    "PLT": [(BLOOD, None, "26515-7", "Platelets [#/volume] in Blood", W, "")],
    "PT-INR": [({"022": "plasma"}, None, "6301-6", "INR in Platelet poor plasma by Coagulation assay", W, "")],
    "PT-Sec": [({"022": "plasma"}, None, "5902-2", "Prothrombin time (PT)", W, "")],
    "RBC": [(BLOOD, None, "26453-1", "Erythrocytes [#/volume] in Blood", W, "")],
    "T-Bil": [(SP, None, "1975-2", "Bilirubin.total [Mass/volume] in Serum or Plasma", W, "")],
    "T-CHO": [(SP, None, "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", W, "")],
    "TP": [(SP, None, "2885-2", "Protein [Mass/volume] in Serum or Plasma", W, "")],
    "UA": [(SP, None, "3084-1", "Urate [Mass/volume] in Serum or Plasma", W, "")],
    "WBC": [(BLOOD, None, "26464-8", "Leukocytes [#/volume] in Blood", W, "")],
    "U-Glu": [(URINE, None, "25428-4", "Glucose [Presence] in Urine by Test strip", W, "qualitative urine glucose")],
    "U-TP": [(URINE, None, "20454-5", "Protein [Presence] in Urine by Test strip", W, "qualitative urine protein")],
    "U-Bld": [(URINE, None, "5794-3", "Hemoglobin [Presence] in Urine by Test strip", W, "qualitative urine occult blood")],
    "U-A/C": [(URINE, None, "9318-7", "Albumin/Creatinine [Mass Ratio] in Urine", W, "")],
    "U-P/C": [(URINE, None, "2890-2", "Protein/Creatinine [Mass Ratio] in Urine", W, "")],
    # infection items
    "HBs-AG-RESULT": [({"023": "serum"}, None, "5195-3", "Hepatitis B virus surface Ag [Presence] in Serum", W, "result (判定)")],
    "HBs-AB-RESULT": [({"023": "serum"}, None, "22322-2", "Hepatitis B virus surface Ab [Presence] in Serum", W, "result (判定)")],
    "HBs-AB-QUANT": [({"023": "serum"}, None, "16935-9", "Hepatitis B virus surface Ab [Units/volume] in Serum", W, "quantity")],
    "HCV-AB-RESULT": [({"023": "serum"}, None, "16128-1", "Hepatitis C virus Ab [Presence] in Serum", W, "result (判定)")],
    "HIV-1P2-AB-P24-RESULT": [({"023": "serum"}, None, "56888-1", "HIV 1+2 Ab+HIV1 p24 Ag [Presence] in Serum or Plasma by Immunoassay", W, "result (判定)")],
    "HIV-1P2-AB-RESULT": [({"023": "serum"}, None, "7918-6", "HIV 1+2 Ab [Presence] in Serum", W, "result (判定)")],
    "HIV-1-AB-RESULT": [({"023": "serum"}, None, "7917-8", "HIV 1 Ab [Presence] in Serum", W, "result (判定)")],
    "HIV-1-QUANT": [({"022": "plasma"}, None, "20447-9", "HIV 1 RNA [#/volume] (viral load) in Serum or Plasma by NAA with probe detection", W, "viral load")],
    "TP-RESULT": [({"023": "serum"}, None, "22587-0", "Treponema pallidum Ab [Presence] in Serum", W, "result (定性)")],
    "STS-RESULT": [({"023": "serum"}, None, "20507-0", "Reagin Ab [Presence] in Serum by RPR", "inexact", "STS in Japan covers several non-treponemal methods (RPR card, latex agglutination); LOINC 20507-0 is RPR")],
    "STS-QLRESULT": [({"023": "serum"}, None, "20507-0", "Reagin Ab [Presence] in Serum by RPR", "inexact", "STS in Japan covers several non-treponemal methods (RPR card, latex agglutination); LOINC 20507-0 is RPR")],
}

# RxNorm ingredient (TTY=IN) RXCUIs. Japanese ingredient name exactly as in the JFAGY GCM display "【成分名】<name>".
INGREDIENTS = [
    ("アムロジピンベシル酸塩", "17767", "amlodipine"),
    ("アトルバスタチンカルシウム水和物", "83367", "atorvastatin"),
    ("メトホルミン塩酸塩", "6809", "metformin"),
    ("アセトアミノフェン", "161", "acetaminophen"),
    ("ファモチジン", "4278", "famotidine"),
    ("アスピリン", "1191", "aspirin"),
    ("ロスバスタチンカルシウム", "301542", "rosuvastatin"),
    ("プラバスタチンナトリウム", "42463", "pravastatin"),
    ("シンバスタチン", "36567", "simvastatin"),
    ("オメプラゾール", "7646", "omeprazole"),
    ("ランソプラゾール", "17128", "lansoprazole"),
    ("エソメプラゾールマグネシウム水和物", "283742", "esomeprazole"),
    ("ワルファリンカリウム", "11289", "warfarin"),
    ("フロセミド", "4603", "furosemide"),
    ("プレドニゾロン", "8638", "prednisolone"),
    ("レボチロキシンナトリウム水和物", "10582", "levothyroxine"),
    ("クロピドグレル硫酸塩", "32968", "clopidogrel"),
    ("ロサルタンカリウム", "52175", "losartan"),
    ("カンデサルタンシレキセチル", "214354", "candesartan"),
    ("バルサルタン", "69749", "valsartan"),
    ("テルミサルタン", "73494", "telmisartan"),
    ("オルメサルタンメドキソミル", "321064", "olmesartan"),
    ("ニフェジピン", "7417", "nifedipine"),
    ("アロプリノール", "519", "allopurinol"),
    ("フェブキソスタット", "73689", "febuxostat"),
    ("シタグリプチンリン酸塩水和物", "593411", "sitagliptin"),
    ("グリメピリド", "25789", "glimepiride"),
    ("クラリスロマイシン", "21212", "clarithromycin"),
    ("ゾルピデム酒石酸塩", "39993", "zolpidem"),
    ("アモキシシリン水和物", "723", "amoxicillin"),
    ("スピロノラクトン", "9997", "spironolactone"),
    ("ビソプロロールフマル酸塩", "19484", "bisoprolol"),
    ("カルベジロール", "20352", "carvedilol"),
]

# MHLW ICD-10 (2013, full digits, written without the dot) -> WHO ICD-10 (dotted). Same code, so "equivalent".
ICD10 = [
    ("I10", "Essential (primary) hypertension"),
    ("E119", "Type 2 diabetes mellitus: Without complications"),
    ("E149", "Unspecified diabetes mellitus: Without complications"),
    ("E780", "Pure hypercholesterolaemia"),
    ("E785", "Hyperlipidaemia, unspecified"),
    ("E790", "Hyperuricaemia without signs of inflammatory arthritis and tophaceous disease"),
    ("M109", "Gout, unspecified"),
    ("E039", "Hypothyroidism, unspecified"),
    ("J00", "Acute nasopharyngitis [common cold]"),
    ("J189", "Pneumonia, unspecified"),
    ("J304", "Allergic rhinitis, unspecified"),
    ("J449", "Chronic obstructive pulmonary disease, unspecified"),
    ("J459", "Asthma, unspecified"),
    ("I209", "Angina pectoris, unspecified"),
    ("I219", "Acute myocardial infarction, unspecified"),
    ("I509", "Heart failure, unspecified"),
    ("I639", "Cerebral infarction, unspecified"),
    ("K219", "Gastro-oesophageal reflux disease without oesophagitis"),
    ("K259", "Gastric ulcer: Unspecified as acute or chronic, without haemorrhage or perforation"),
    ("K297", "Gastritis, unspecified"),
    ("K760", "Fatty (change of) liver, not elsewhere classified"),
    ("B181", "Chronic viral hepatitis B without delta-agent"),
    ("B182", "Chronic viral hepatitis C"),
    ("C169", "Malignant neoplasm: Stomach, unspecified"),
    ("C189", "Malignant neoplasm: Colon, unspecified"),
    ("C349", "Malignant neoplasm: Bronchus or lung, unspecified"),
    ("C509", "Malignant neoplasm: Breast, unspecified"),
    ("N185", "Chronic kidney disease, stage 5"),
    ("N189", "Chronic kidney disease, unspecified"),
    ("F329", "Depressive episode, unspecified"),
    ("G309", "Alzheimer disease, unspecified"),
    ("M810", "Postmenopausal osteoporosis"),
    ("M819", "Osteoporosis, unspecified"),
    ("L209", "Atopic dermatitis, unspecified"),
]

# Example per-institution local lab codes (fictitious codes of institution 1318814790, the
# institution number used in the CLINS examples) -> JLAC10 17-digit codes from the CLINS core-lab CS.
LOCAL_ROWS = [
    ("10001", "AST(GOT)", "3B035000002327201", "AST"),
    ("10002", "ALT(GPT)", "3B045000002327201", "ALT"),
    ("10003", "γ-GT", "3B090000002327701", "GGT"),
    ("10010", "クレアチニン", "3C015000002327101", "Cre"),
    ("10011", "尿素窒素", "3C025000002327201", "BUN"),
    ("10020", "HbA1c(NGSP)", "3D046000001906202", "HbA1c-NGSP"),
    ("10021", "血糖", "3D010000002227101", "BG"),
    ("10030", "HDL-コレステロール", "3F070000002327101", "HDL-C"),
    ("10031", "LDL-コレステロール", "3F077000002327101", "LDL-C"),
    ("10032", "中性脂肪", "3F015000002327101", "TG"),
    ("20001", "白血球数", "2A990000001930952", "WBC"),
    ("20002", "ヘモグロビン", "2A030000001930901", "Hb"),
    ("20003", "血小板数", "2A050000001930901", "PLT"),
]


def write(path, meta, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    out = io.StringIO()
    for k in ["name", "version", "effective-date", "source-system", "target-system", "publisher", "description", "institution"]:
        if meta.get(k):
            out.write(f"# {k}: {meta[k]}\n")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["source_code", "source_display", "target_code", "target_display", "equivalence", "comment"])
    for r in rows:
        w.writerow(r)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(out.getvalue())
    print(f"{path}: {len(rows)} rows")


def prop(c, name):
    for p in c.get("property", []):
        if p.get("code") == name:
            return p.get("valueString")
    return None


def jlac_rows(cs):
    rows, seen = [], set()
    for item in cs["concept"]:
        rules = ANALYTES.get(item["code"])
        if not rules:
            continue
        for ch in item.get("concept", []):
            code = ch["code"]
            material = code[9:12]
            method = prop(ch, "method") or ""
            for mats, mfilter, loinc, ldisp, eq, comment in rules:
                if material not in mats:
                    continue
                if mfilter and (mfilter.startswith("!") and method == mfilter[1:] or not mfilter.startswith("!") and method != mfilter):
                    continue
                if code in seen:
                    continue
                seen.add(code)
                disp = f"{item['code']} ({mats[material]}{', ' + method if method else ''})"
                rows.append((code, disp, loinc, ldisp, eq, comment))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="mapping-tables")
    a = ap.parse_args()
    tgz = os.path.join(a.shared, "fhir-packages", "jp-eCSCLINS.r4-1.x.x-temp.tgz")
    with tarfile.open(tgz) as t:
        core = json.load(t.extractfile("package/CodeSystem-jp-clins-codesystem-JLAC10-corelabo-cs.json"))
        inf = json.load(t.extractfile("package/CodeSystem-jp-clins-codesystem-JLAC10-infectionlabo-cs.json"))
    core_rows, inf_rows = jlac_rows(core), jlac_rows(inf)
    src_note = "Rows derived from the JLAC10 children of the jp-eCSCLINS 1.x.x-temp CodeSystem {} (version {}) by the curated analyte->LOINC list in tools/gen_tables.py. Starter set, not an official master."
    write(os.path.join(a.out, "jlac10-corelab-to-loinc.csv"), {"name": "jlac10-corelab-to-loinc", "version": VERSION, "effective-date": EFFECTIVE, "source-system": CORE_CS, "target-system": LOINC, "publisher": PUBLISHER,
          "description": src_note.format("JP_CLINS_ObsLabResult_CoreLabo_CS", core.get("version"))}, core_rows)
    write(os.path.join(a.out, "jlac10-infection-to-loinc.csv"), {"name": "jlac10-infection-to-loinc", "version": VERSION, "effective-date": EFFECTIVE, "source-system": INF_CS, "target-system": LOINC, "publisher": PUBLISHER,
          "description": src_note.format("JP_CLINS_ObsLabResult_InfectionLabo_CS", inf.get("version"))}, inf_rows)
    write(os.path.join(a.out, "jlac10-17digits-to-loinc.csv"), {"name": "jlac10-17digits-to-loinc", "version": VERSION, "effective-date": EFFECTIVE, "source-system": JLAC10, "target-system": LOINC, "publisher": PUBLISHER,
          "description": "The same JLAC10 17-digit codes and LOINC targets as jlac10-corelab-to-loinc and jlac10-infection-to-loinc, for codings that use the general JLAC10 system (slice jlac10LaboCode). Starter set, not an official master."}, core_rows + inf_rows)

    # drugs
    term = os.path.join(a.shared, "terminology")
    gcm = json.load(open(os.path.join(term, "CodeSystem-jp-jfagymedicationallergengcm-cs-20241028.json")))["concept"]
    ycm = json.load(open(os.path.join(term, "CodeSystem-jp-jfagymedicationallergenycm-cs-20241025.json")))["concept"]
    yj_rows, gen_rows = [], []
    for jp, rxcui, en in INGREDIENTS:
        g = [c for c in gcm if c["display"] == "【成分名】" + jp]
        if len(g) != 1:
            sys.exit(f"ingredient {jp}: expected one GCM concept, found {len(g)}")
        prefix7 = g[0]["code"][3:10]
        prods = [c for c in ycm if c["code"].startswith("YCM" + prefix7)]
        gen_seen = set()
        for c in prods:
            yj = c["code"][3:]
            yj_rows.append((yj, c["display"], rxcui, en, "wider", f"RxNorm ingredient (IN) {en}; YJ product ({jp}) -> ingredient"))
            gcode = yj[:9] + "ZZZ"
            if gcode not in gen_seen:
                gen_seen.add(gcode)
                gen_rows.append((gcode, f"【般】{jp} ({yj[7]} {yj[8]})", rxcui, en, "wider", f"RxNorm ingredient (IN) {en}; code form YJ[0:9]+ZZZ, verify against the MHLW general-name master"))
    write(os.path.join(a.out, "yj-to-rxnorm.csv"), {"name": "yj-to-rxnorm", "version": VERSION, "effective-date": EFFECTIVE, "source-system": YJ, "target-system": RXNORM, "publisher": PUBLISHER,
          "description": f"YJ codes of {len(INGREDIENTS)} common single-ingredient drugs (products taken from the JFAGY YCM CodeSystem 20241025, matched on the YJ ingredient prefix of the JFAGY GCM ingredient code) -> RxNorm ingredient RXCUI. Starter set, not an official master."}, yj_rows)
    write(os.path.join(a.out, "generalname-to-rxnorm.csv"), {"name": "generalname-to-rxnorm", "version": VERSION, "effective-date": EFFECTIVE, "source-system": GENERAL, "target-system": RXNORM, "publisher": PUBLISHER,
          "description": "General-name (一般名処方) codes, formed as the first 9 characters of the YJ codes in yj-to-rxnorm + ZZZ, -> RxNorm ingredient RXCUI. Codes not in the MHLW general-name master never match and do no harm. Starter set, not an official master."}, gen_rows)

    # ICD-10
    rows = [(c, t, c if len(c) == 3 else c[:3] + "." + c[3:], t, "equivalent", "MHLW ICD-10 2013 code = WHO ICD-10 code (written without the dot)") for c, t in ICD10]
    write(os.path.join(a.out, "mhlw-icd10-to-icd10.csv"), {"name": "mhlw-icd10-to-icd10", "version": VERSION, "effective-date": EFFECTIVE, "source-system": ICD_JP, "target-system": ICD_WHO, "publisher": PUBLISHER,
          "description": "Common diagnoses: MHLW ICD-10 (2013 edition, full digits) -> WHO ICD-10. Starter set, not an official master."}, rows)
    medis = json.load(open(os.path.join(term, "CodeSystem-medis-disease-exchange-5.11.json")))
    has_icd = any(p.get("code", "").lower().startswith("icd") for c in medis.get("concept", []) for p in c.get("property", []))
    print("MEDIS exchange code file carries ICD-10 properties:", has_icd, "(no MEDIS -> ICD-10 table is derived when false)")

    # local example
    rows = [(lc, ld, j, d, "equivalent", "example row (fictitious local code)") for lc, ld, j, d in LOCAL_ROWS]
    write(os.path.join(a.out, "local", "1318814790-lab-to-jlac10.csv"), {"name": "1318814790-lab-to-jlac10", "version": VERSION, "effective-date": EFFECTIVE, "source-system": LOCAL, "target-system": JLAC10, "publisher": "Example institution 1318814790 (fictitious codes)",
          "description": "Example per-institution table: local lab codes of institution 1318814790 -> JLAC10 17-digit codes. The codes are fictitious; real tables come from each institution.", "institution": "1318814790"}, rows)


if __name__ == "__main__":
    main()
