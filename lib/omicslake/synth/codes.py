"""Real code systems used by the generator: SNOMED CT, ICD-10-CM, LOINC/UCUM, RxNorm.

Each entry: (code, display, extra). The Charlson comorbidities are the conditions the
readmission truth depends on.
"""

from __future__ import annotations

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"

# key -> (SNOMED code, display, ICD-10-CM)
CONDITIONS: dict[str, tuple[str, str, str]] = {
    "t2d": ("44054006", "Diabetes mellitus type 2 (disorder)", "E11.9"),
    "hypertension": ("59621000", "Essential hypertension (disorder)", "I10"),
    "chf": ("88805009", "Chronic congestive heart failure (disorder)", "I50.9"),
    "copd": ("185086009", "Chronic obstructive bronchitis (disorder)", "J44.9"),
    "ckd": ("433144002", "Chronic kidney disease stage 3 (disorder)", "N18.30"),
    "mi": ("22298006", "Myocardial infarction (disorder)", "I21.9"),
    "cancer": ("254637007", "Non-small cell lung cancer (disorder)", "C34.90"),
    "dementia": ("26929004", "Alzheimer's disease (disorder)", "G30.9"),
    "bronchitis": ("10509002", "Acute bronchitis (disorder)", "J20.9"),
    "sinusitis": ("444814009", "Viral sinusitis (disorder)", "J01.90"),
    "prediabetes": ("15777000", "Prediabetes (finding)", "R73.03"),
    # the planted comparative-effect study (synth.exposure): its outcome, modified outcome, negative controls
    "stroke": ("230690007", "Cerebrovascular accident (disorder)", "I63.9"),
    "dvt": ("132281000119108", "Acute deep venous thrombosis (disorder)", "I82.409"),
    "ankle_fracture": ("16114001", "Fracture of ankle (disorder)", "S82.899A"),
    "atopic_dermatitis": ("24079001", "Atopic dermatitis (disorder)", "L20.9"),
    "impacted_molars": ("196416002", "Impacted molars (disorder)", "K01.1"),
    "viral_pharyngitis": ("195662009", "Acute viral pharyngitis (disorder)", "J02.9"),
    "meniscus_tear": ("239720000", "Tear of meniscus of knee (disorder)", "S83.209A"),
    # its mediated outcome (within a year of the index, through LDL cholesterol at ~90 days)
    "acs": ("394659003", "Acute coronary syndrome (disorder)", "I24.9"),
}
CHARLSON = ("chf", "copd", "ckd", "mi", "cancer", "dementia")
UNKNOWN_CONDITION_CODE = "999999999"

# key -> (LOINC, display, UCUM unit, category)
OBSERVATIONS: dict[str, tuple[str, str, str, str]] = {
    "height": ("8302-2", "Body Height", "cm", "vital-signs"),
    "weight": ("29463-7", "Body Weight", "kg", "vital-signs"),
    "bmi": ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "vital-signs"),
    "sbp": ("8480-6", "Systolic Blood Pressure", "mm[Hg]", "vital-signs"),
    "dbp": ("8462-4", "Diastolic Blood Pressure", "mm[Hg]", "vital-signs"),
    "hba1c": ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "laboratory"),
    "glucose": ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", "laboratory"),
    "chol": ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", "laboratory"),
    "hdl": ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", "laboratory"),
    "ldl": ("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", "mg/dL", "laboratory"),
    "tg": ("2571-8", "Triglycerides", "mg/dL", "laboratory"),
    "creatinine": ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "laboratory"),
    # the planted study's mediator (synth.exposure), ~90 days after the index; a code of its own
    # (calculated, not the direct assay of the wellness visits) so a study can tell them apart
    "ldl_calc": (
        "13457-7",
        "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
        "mg/dL",
        "laboratory",
    ),
}
# Delivered only in the second (drifted) batch.
HEART_RATE = ("8867-4", "Heart rate", "/min", "vital-signs")

# key -> (RxNorm, display, condition key it treats)
MEDICATIONS: dict[str, tuple[str, str, str]] = {
    "metformin": ("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet", "t2d"),
    "lisinopril": ("314076", "lisinopril 10 MG Oral Tablet", "hypertension"),
    "simvastatin": ("312961", "Simvastatin 20 MG Oral Tablet", "hyperlipidemia"),
    "furosemide": ("310429", "Furosemide 40 MG Oral Tablet", "chf"),
    "albuterol": ("745679", "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "copd"),
    # the planted comparative-effect study (synth.exposure): new drug (target) vs old drug (comparator)
    "new_drug": ("259255", "atorvastatin 80 MG Oral Tablet", "stroke"),
    "old_drug": ("314231", "simvastatin 10 MG Oral Tablet", "stroke"),
}

# key -> (SNOMED, display)
PROCEDURES: dict[str, tuple[str, str]] = {
    "assessment": ("710824005", "Assessment of health and social care needs (procedure)"),
    "med_rec": ("430193006", "Medication Reconciliation (procedure)"),
    "glucose_screen": ("268556000", "Urine screening for glucose (procedure)"),
}

# encounter kind -> (SNOMED, display, Synthea ENCOUNTERCLASS, FHIR v3 ActCode)
ENCOUNTERS: dict[str, tuple[str, str, str, str]] = {
    "wellness": ("162673000", "General examination of patient (procedure)", "wellness", "AMB"),
    "outpatient": ("185345009", "Encounter for symptom (procedure)", "ambulatory", "AMB"),
    "diagnosis": ("185347001", "Encounter for problem (procedure)", "ambulatory", "AMB"),
    "inpatient": ("32485007", "Hospital admission (procedure)", "inpatient", "IMP"),
}

FIRST_M = [
    "James",
    "John",
    "Robert",
    "Michael",
    "William",
    "David",
    "Jose",
    "Wei",
    "Kwame",
    "Luis",
    "Thomas",
    "Daniel",
    "Arjun",
    "Mohammed",
    "Hiroshi",
    "Samuel",
    "Carlos",
    "Ethan",
    "Noah",
    "Liam",
]
FIRST_F = [
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Maria",
    "Mei",
    "Amara",
    "Sofia",
    "Aisha",
    "Susan",
    "Jessica",
    "Priya",
    "Fatima",
    "Yuki",
    "Grace",
    "Lucia",
    "Emma",
    "Olivia",
    "Ava",
]
LAST = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Nguyen",
    "Chen",
    "Okafor",
    "Patel",
    "Kim",
    "Tanaka",
    "Haag",
    "Schultz",
    "Kuhn",
    "Mensah",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
]
STREETS = [
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Elm St",
    "Washington Blvd",
    "Lake Rd",
    "Hill St",
    "Park Ave",
    "Pine Ct",
    "River Rd",
    "Sunset Way",
]
# (city, county, FIPS, ZIP) in Massachusetts; 01001-02791, plus a New Hampshire ZIP in a
# restricted ZIP3 (036) so that de-identification's 000 rule has something to do.
PLACES = [
    ("Boston", "Suffolk County", "25025", "02118"),
    ("Cambridge", "Middlesex County", "25017", "02139"),
    ("Worcester", "Worcester County", "25027", "01602"),
    ("Springfield", "Hampden County", "25013", "01103"),
    ("Lowell", "Middlesex County", "25017", "01852"),
    ("Brockton", "Plymouth County", "25023", "02301"),
    ("Quincy", "Norfolk County", "25021", "02169"),
    ("Lynn", "Essex County", "25009", "01902"),
    ("New Bedford", "Bristol County", "25005", "02740"),
    ("Pittsfield", "Berkshire County", "25003", "01201"),
    ("Walpole", "Cheshire County", "33005", "03608"),
]
