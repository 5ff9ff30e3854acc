#!/bin/sh
# Recall of each class by how its diagnosis was confirmed (LesionGroupings' diagnosis_confirm_type),
# from `dermclass predict` probabilities (argmax after the model's logit adjustment).
# usage: bench/recall-by-confirmation.sh PRED.csv DATA_ROOT  (an ISIC 2018 Task 3 root with its
# LesionGroupings and GroundTruth CSVs; PRED.csv from `dermclass predict --out`)
set -eu
[ $# -eq 2 ] || { echo "usage: $0 PRED.csv DATA_ROOT" >&2; exit 2; }
for f in "$1" "$2/ISIC2018_Task3_Training_LesionGroupings.csv" "$2/ISIC2018_Task3_Training_GroundTruth.csv"; do
  [ -r "$f" ] || { echo "$0: cannot read $f" >&2; exit 1; }
done
awk -F, '
FNR==1 { f++ ; next }
f==1 { gsub(/"/,""); t[$1]=$3; next }                                 # LesionGroupings: image,lesion_id,type
f==2 { for(i=2;i<=8;i++) if($i+0==1) y[$1]=i-1; next }                    # GroundTruth one-hot
f==3 { if(!($1 in y)) { print FILENAME ": " $1 " is not in the ground truth" > "/dev/stderr"; bad=1; exit 1 }
       best=2; for(i=3;i<=8;i++) if($i>$best) best=i; p=best-1; c=y[$1]; k=c SUBSEP t[$1];
       n[k]++; h[k]+=(p==c); N[c]++; H[c]+=(p==c) }
END { if(bad) exit 1; split("MEL NV BCC AKIEC BKL DF VASC",C," ");
      for(c=1;c<=7;c++){ s=s+H[c]/N[c]; printf "%-6s all %4d/%4d = %.2f", C[c], H[c], N[c], H[c]/N[c];
        for(k in n){ split(k,a,SUBSEP); if(a[1]==c) printf " | %s %d/%d = %.2f", a[2], h[k], n[k], h[k]/n[k] }
        printf "\n" }
      printf "balanced accuracy %.4f\n", s/7;
      for(c=1;c<=7;c++){ k=c SUBSEP "histopathology"; if(n[k]) { hs+=h[k]/n[k]; hc++ } }
      printf "mean recall over the histopathology-confirmed images of %d classes %.4f\n", hc, hs/hc }
' "$2/ISIC2018_Task3_Training_LesionGroupings.csv" "$2/ISIC2018_Task3_Training_GroundTruth.csv" "$1"
